"""``DIR/report.html``: the run report as one self-contained page (inline SVG, no
script, no network), written by every job next to ``report.json``.

``collect`` reads what the charts need from the written output (a few columns,
batch by batch: counts, histograms and the first ten rows per language and per
rejection reason); ``render`` turns the report plus that into HTML. Every text
shown from the data is escaped.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SAMPLES = 10  # rows shown per language and per rejection reason
BINS = 10  # LID score histogram bins over [0, 1]
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]
KEPT_COLOUR, DEAD_COLOUR = "#59a14f", "#e15759"
REASON_COLOURS = [c for c in PALETTE if c not in (KEPT_COLOUR, DEAD_COLOUR)]


# --- reading the output -------------------------------------------------------------------
def _batches(path: Path):
    if path.suffix == ".parquet":
        yield from pq.ParquetFile(path).iter_batches()
        return
    with pa.memory_map(str(path)) as source:
        yield from pa.ipc.open_stream(source)


def _files(root: Path, rejected: bool) -> list[Path]:
    if rejected:
        return sorted((root / "_rejected").glob("*.arrow"))
    return sorted(p for p in list(root.rglob("*.arrow")) + list(root.rglob("*.parquet"))
                  if not any(part.startswith("_") for part in p.relative_to(root).parts))


MAX_ROWS = 1_000_000  # rows read for the data charts: the driver must not reread a huge output


def collect(root: str | Path, max_rows: int = MAX_ROWS) -> dict:
    """Counts, histograms and samples from the output folder ``root``, over its first
    ``max_rows`` kept rows (and as many rejected rows)."""
    root = Path(root)
    seen = 0
    chars: Counter = Counter()
    scripts: Counter = Counter()
    policies: Counter = Counter()
    origins: Counter = Counter()
    histograms: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(BINS, np.int64))
    samples: dict[str, list[dict]] = defaultdict(list)
    for batch in _capped(_files(root, rejected=False), max_rows):
        seen += batch.num_rows
        names = batch.schema.names
        lang = (pc.fill_null(batch.column("lang"), "und") if "lang" in names
                else pa.array(["all"] * batch.num_rows)).to_pylist()
        if "text" in names:
            for code, n in zip(lang, pc.utf8_length(pc.fill_null(batch.column("text"), "")).to_pylist()):
                chars[code] += n
        if "lang_score" in names:
            score = pc.fill_null(batch.column("lang_score"), 0.0).to_numpy(zero_copy_only=False)
            bins = np.clip((score * BINS).astype(np.int64), 0, BINS - 1)
            codes, which = np.unique(np.asarray(lang, dtype=object), return_inverse=True)
            counts = np.bincount(which * BINS + bins, minlength=len(codes) * BINS).reshape(len(codes), BINS)
            for code, row in zip(codes.tolist(), counts):
                histograms[code] += row
        if "script" in names:
            scripts.update(pc.fill_null(batch.column("script"), "none").to_pylist())
        if "translit_policy" in names:
            policies.update(pc.fill_null(batch.column("translit_policy"), "none").to_pylist())
            tokens = pc.list_flatten(batch.column("translit_tokens"))
            if len(tokens):
                origins.update(pc.fill_null(pc.struct_field(tokens, "origin"), "none").to_pylist())
        shown = [c for c in ("id", "lang", "lang_score", "text", "translit_text", "method", "tokens")
                 if c in names]
        for i, code in enumerate(lang):
            if len(samples[code]) < SAMPLES:
                samples[code].append({c: batch.column(c)[i].as_py() for c in shown})
    rejected: dict[str, list[dict]] = defaultdict(list)
    for batch in _capped(_files(root, rejected=True), max_rows):
        rows = batch.select(["stage", "reason", "id", "text", "detail"]).to_pylist()
        for row in rows:
            key = f"{row['stage']}: {row['reason']}"
            if len(rejected[key]) < SAMPLES:
                rejected[key].append(row)
    return {"chars": dict(chars), "scripts": dict(scripts.most_common()), "policies": dict(policies.most_common()),
            "origins": dict(origins.most_common()), "lid_histograms": {k: v.tolist() for k, v in histograms.items()},
            "samples": dict(samples), "rejected_samples": dict(sorted(rejected.items())), "rows_read": seen}


def _capped(paths: list[Path], max_rows: int):
    """The batches of ``paths``, stopping once ``max_rows`` rows have been given."""
    given = 0
    for path in paths:
        for batch in _batches(path):
            if given >= max_rows:
                return
            batch = batch.slice(0, max_rows - given)
            given += batch.num_rows
            yield batch


# --- SVG ------------------------------------------------------------------------------------
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def bar_chart(title: str, values: dict[str, float], log: bool = False, fmt: str = "{:,.0f}",
              colour: str = PALETTE[0]) -> str:
    """Horizontal bars, one per key, largest first as given."""
    if not values:
        return ""
    width, bar, label_w = 760, 18, 150
    top = max(values.values()) or 1
    scale = (lambda v: math.log10(1 + v) / math.log10(1 + top)) if log else (lambda v: v / top)
    rows = []
    for i, (name, value) in enumerate(values.items()):
        y = i * (bar + 6)
        w = max(1.0, scale(max(value, 0)) * (width - label_w - 90))
        rows.append(f'<g class="bar"><title>{_e(name)}: {_e(fmt.format(value))}</title>'
                    f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{_e(name)}</text>'
                    f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" fill="{colour}"/>'
                    f'<text x="{label_w + w + 4:.1f}" y="{y + 13}">{_e(fmt.format(value))}</text></g>')
    height = len(values) * (bar + 6)
    return (f'<figure><figcaption>{_e(title)}{" (log scale)" if log else ""}</figcaption>'
            f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{_e(title)}">{"".join(rows)}</svg></figure>')


def stacked_chart(title: str, rows: list[tuple[str, list[tuple[str, int, str]]]]) -> str:
    """One bar per row, split into (label, value, colour) segments, with a legend."""
    if not rows:
        return ""
    width, bar, label_w = 760, 20, 120
    top = max(sum(v for _, v, _ in segs) for _, segs in rows) or 1
    out, legend = [], {}
    for i, (name, segs) in enumerate(rows):
        y, x = i * (bar + 8), float(label_w)
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_e(name)}</text>')
        for label, value, colour in segs:
            w = value / top * (width - label_w - 20)
            if value:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar}" fill="{colour}">'
                           f'<title>{_e(name)} {_e(label)}: {value:,}</title></rect>')
            x += w
            legend.setdefault(label, colour)
    height = len(rows) * (bar + 8)
    keys = "".join(f'<span class="key"><i style="background:{c}"></i>{_e(k)}</span>' for k, c in legend.items())
    return (f'<figure><figcaption>{_e(title)}</figcaption><svg class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">{"".join(out)}</svg>'
            f'<div class="legend">{keys}</div></figure>')


def histogram(title: str, counts: list[int]) -> str:
    width, height, pad = 180, 80, 14
    top = max(counts) or 1
    w = (width - 2) / len(counts)
    bars = "".join(f'<rect x="{1 + i * w:.1f}" y="{height - pad - c / top * (height - pad - 4):.1f}" '
                   f'width="{w - 1:.1f}" height="{c / top * (height - pad - 4):.1f}" fill="{PALETTE[0]}">'
                   f'<title>{i / len(counts):.1f}-{(i + 1) / len(counts):.1f}: {c}</title></rect>'
                   for i, c in enumerate(counts))
    return (f'<figure class="small"><figcaption>{_e(title)}</figcaption><svg class="chart" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}">{bars}<text x="1" y="{height - 2}">0</text>'
            f'<text x="{width - 8}" y="{height - 2}">1</text></svg></figure>')


def _cell(value) -> str:
    return _e(f"{value:.4f}" if isinstance(value, float) else value)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --- the page -----------------------------------------------------------------------------------
def _accounting(report: dict) -> str:
    stages = report.get("stages") or []
    if not stages and report.get("rows"):  # the fine-tuning job: rows written per split
        return bar_chart("rows written per split", report["rows"])
    rows = []
    for s in stages:
        segs = [("kept", s["kept"], KEPT_COLOUR)]
        for j, (reason, n) in enumerate(s["rejected"].items()):
            segs.append((f"rejected: {reason}", n, REASON_COLOURS[j % len(REASON_COLOURS)]))
        segs.append(("dead letter", sum(s["dead_letter"].values()), DEAD_COLOUR))
        rows.append((s["stage"], segs))
    return stacked_chart("rows per stage: kept, rejected by reason, dead letter", rows)


def _languages(report: dict, data: dict) -> str:
    langs = report.get("languages") or {}
    if not langs:
        return ""
    chars = {k: data["chars"].get(k, 0) for k in langs}
    linear = bar_chart("rows per language", langs) + bar_chart("characters per language", chars)
    log = bar_chart("rows per language", langs, log=True) + bar_chart("characters per language", chars, log=True)
    return ('<section><h2>Languages</h2><input type="checkbox" id="log"><label for="log">log scale</label>'
            f'<div class="linear">{linear}</div><div class="log">{log}</div></section>')


def render(report: dict, data: dict) -> str:
    name = report.get("name") or report.get("task") or "xlcorpus"
    acct = report["accounting"]
    read = data.get("rows_read", 0)
    kept = acct.get("kept", read)
    sampled = (f"<p>Charts from the data cover the first {read:,} of {kept:,} kept rows.</p>"
               if isinstance(kept, int) and read < kept else "")
    parts = [f"<h1>{_e(name)}</h1><p>xlcorpus {_e(report.get('xlcorpus_version', ''))}; "
             + "; ".join(f"{_e(k)} {_e(v)}" for k, v in acct.items()) + "</p>" + sampled,
             f"<section><h2>Accounting</h2>{_accounting(report)}</section>", _languages(report, data)]
    if data["lid_histograms"]:
        top = sorted(data["lid_histograms"], key=lambda k: -sum(data["lid_histograms"][k]))[:24]
        parts.append("<section><h2>Language-ID score per language</h2>"
                     + "".join(histogram(k, data["lid_histograms"][k]) for k in top) + "</section>")
    if data["scripts"]:
        parts.append(f"<section><h2>Scripts</h2>{bar_chart('rows per writing system', data['scripts'])}</section>")
    if report.get("language_distances"):
        dist = {d["lang"]: d["levenshtein"] for d in report["language_distances"]}
        parts.append("<section><h2>Lexical distance to the target</h2>"
                     + bar_chart("mean normalised edit distance (lower: closer)", dist, fmt="{:.3f}") + "</section>")
    if data["policies"]:
        parts.append("<section><h2>Transliteration</h2>" + bar_chart("rows per policy", data["policies"])
                     + bar_chart("words per origin label", data["origins"]) + "</section>")
    if report.get("dedup"):
        d = report["dedup"]
        parts.append("<section><h2>Duplicates</h2>"
                     + bar_chart("exact duplicate groups by size", d["exact"].get("group_sizes", {}))
                     + bar_chart("near-duplicate clusters by size", d.get("near", {}).get("cluster_sizes", {}))
                     + f"<p>{d['exact']['duplicates']} exact duplicates removed"
                     + (f", {d['near']['near_duplicates']} near duplicates" if d.get("near") else "") + "</p></section>")
    if report.get("quality"):
        q = report["quality"]["rejections_by_rule"]
        rows = [[rule, lang, n] for rule, by_lang in q.items() for lang, n in by_lang.items()]
        parts.append("<section><h2>Quality rules</h2>" + (_table(["rule", "language", "rejected"], rows)
                                                           if rows else "<p>no row rejected</p>") + "</section>")
    if report.get("retention"):
        parts.append("<section><h2>Projection retention</h2>" + bar_chart(
            "rows kept per method", {m: r["rate"] for m, r in report["retention"].items()}, fmt="{:.1%}")
            + "</section>")
    if report.get("fertility"):
        fert = {k: v["fertility"] for k, v in report["fertility"].items()}
        parts.append("<section><h2>Fine-tuning</h2>" + bar_chart("subword pieces per word", fert, fmt="{:.2f}")
                     + (bar_chart("language share before mixing", report["mix"]["share_before"], fmt="{:.1%}")
                        + bar_chart("language share after mixing", report["mix"]["share_after"], fmt="{:.1%}")
                        if report.get("mix") else "") + "</section>")
    samples = "".join(f"<h3>{_e(k)}</h3>" + _table(list(rows[0]), [list(r.values()) for r in rows])
                      for k, rows in data["samples"].items() if rows)
    rejected = "".join(f"<h3>{_e(k)}</h3>" + _table(["id", "text", "detail"],
                                                    [[r["id"], r["text"], r["detail"]] for r in rows])
                       for k, rows in data["rejected_samples"].items())
    parts.append(f"<section><h2>Sample rows per language</h2>{samples}</section>")
    if rejected:
        parts.append(f"<section><h2>Sample rejected rows per reason</h2>{rejected}</section>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(name)}: xlcorpus report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
svg.chart text {{ font-size: 11px; fill: #333; }}
figure {{ margin: 1em 0; }} figure.small {{ display: inline-block; margin: 0.5em; }}
figcaption {{ font-weight: 600; margin-bottom: 0.3em; }}
table {{ border-collapse: collapse; margin: 0.5em 0; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px;
  vertical-align: top; max-width: 520px; overflow-wrap: anywhere; }}
.legend .key {{ margin-right: 1em; }} .legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
.log {{ display: none; }} #log:checked ~ .log {{ display: block; }} #log:checked ~ .linear {{ display: none; }}
</style></head><body>
{"".join(parts)}
<details><summary>report.json</summary><pre>{_e(json.dumps({k: v for k, v in report.items() if k != "shards"},
                                                     indent=1, ensure_ascii=False))}</pre></details>
</body></html>
"""


EMPTY = {"chars": {}, "scripts": {}, "policies": {}, "origins": {}, "lid_histograms": {}, "samples": {},
         "rejected_samples": {}, "rows_read": 0}


def report_html(root: str, report: dict, local: bool = True) -> str:
    """The page for the output in ``root``; charts from the data need a local folder
    (on object stores the page shows what report.json holds)."""
    return render(report, collect(root) if local else EMPTY)
