"""``xlcorpus inspect DIR``: what a written output holds, and its rows.

    xlcorpus inspect DIR                         splits, rows, features, rows per language, accounting
    xlcorpus inspect DIR --sample 5 --lang mlt   five kept rows of Maltese
    xlcorpus inspect DIR --rejected duplicate    rejected rows of one reason (or stage:reason)
    xlcorpus inspect DIR --open                  (re)write DIR/report.html and open it in a browser

Reads the Arrow (``load_from_disk``) or the Parquet (``data/<split>-*.parquet``)
layout; rows are printed escaped of markup, long texts shortened.
"""

from __future__ import annotations

import json
import webbrowser
from collections import Counter
from pathlib import Path

import datasets
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

TEXT_WIDTH = 160  # characters of a text shown per row


def load_output(root: Path) -> datasets.DatasetDict | datasets.Dataset:
    files = sorted((root / "data").glob("*.parquet")) if (root / "data").is_dir() else []
    if files:  # read as it is now: load_dataset's cache could hold an earlier run's rows under this path
        splits: dict[str, list[str]] = {}
        for f in files:
            splits.setdefault(f.name.rsplit("-", 3)[0], []).append(str(f))
        return datasets.DatasetDict({s: datasets.Dataset(pq.read_table(paths)) for s, paths in splits.items()})
    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        return datasets.load_from_disk(str(root))
    raise FileNotFoundError(f"{root} holds no xlcorpus dataset (no dataset_dict.json, state.json or "
                            "data/*.parquet); for a partitioned output inspect DIR/<lang>")


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= TEXT_WIDTH else text[:TEXT_WIDTH - 1] + "…"


def _rows_table(title: str, rows: list[dict], columns: list[str]) -> Table:
    table = Table(title=title, show_lines=True)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(_short(r.get(c)) for c in columns))
    return table


def inspect_output(directory: str, sample: int = 0, lang: str | None = None, rejected: str | None = None,
                   open_report: bool = False, console: Console | None = None) -> int:
    console = console or Console()
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    report = json.loads((root / "report.json").read_text(encoding="utf-8")) if (root / "report.json").exists() else None
    if rejected is not None:
        return _rejected(root, rejected, sample or 10, console)
    data = load_output(root)
    splits = data if isinstance(data, datasets.DatasetDict) else {"all": data}
    table = Table(title=f"dataset {directory}")
    for col in ("split", "rows"):
        table.add_column(col)
    languages: Counter = Counter()
    for name, split in splits.items():
        table.add_row(name, str(split.num_rows))
        if "lang" in split.column_names:
            languages.update(split.data.column("lang").to_pylist())
    console.print(table)
    first = next(iter(splits.values()))
    console.print("features: " + ", ".join(f"{k}: {v}" for k, v in first.features.items()), markup=False)
    if languages:
        console.print("rows per language: " + ", ".join(f"{k} {v}" for k, v in languages.most_common()),
                      markup=False)
    if report:
        a = report["accounting"]
        console.print(f"in {a['in']} = kept {a['kept']} + rejected {a['rejected']} + dead-letter {a['dead_letter']}")
    if sample:
        rows = []
        for split in splits.values():
            chosen = split.filter(lambda r: r["lang"] == lang) if lang and "lang" in split.column_names else split
            rows.extend(chosen.select(range(min(sample - len(rows), chosen.num_rows))).to_list())
            if len(rows) >= sample:
                break
        shown = [c for c in ("id", "lang", "lang_score", "script", "text", "translit_text", "method")
                 if c in first.column_names]
        console.print(_rows_table(f"{len(rows)} row(s)" + (f" of {lang}" if lang else ""), rows, shown))
    if open_report:
        _open(root, report, console)
    return 0


def _rejected(root: Path, reason: str, limit: int, console: Console) -> int:
    path = root / "_rejected"
    if not path.exists():
        raise FileNotFoundError(f"{root} has no _rejected/ folder")
    table = datasets.load_from_disk(str(path)).data.table  # Arrow: filter without a dict per row
    stage, _, why = reason.rpartition(":")
    match = pc.equal(table.column("reason"), why)
    if stage:
        match = pc.and_(match, pc.equal(table.column("stage"), stage))
    chosen = table.filter(match)
    rows = chosen.slice(0, limit).to_pylist()
    reasons = Counter(f"{r}:{w}" for r, w in zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()))
    if not rows:
        console.print(f"no rejected row with reason {reason!r}; reasons: "
                      + ", ".join(f"{k} {v}" for k, v in reasons.most_common()), markup=False)
        return 1
    console.print(_rows_table(f"{chosen.num_rows} row(s) rejected as {reason} (showing {len(rows)})", rows,
                              ["stage", "reason", "id", "source", "line", "text", "detail"]))
    return 0


def _open(root: Path, report: dict | None, console: Console) -> None:
    from xlcorpus.pipelines.html_report import report_html

    if report is None:
        raise FileNotFoundError(f"{root} has no report.json to render")
    page = root / "report.html"
    page.write_text(report_html(str(root), report), encoding="utf-8")
    opened = webbrowser.open(page.as_uri())
    console.print(f"report: {page}" + ("" if opened else " (no browser found here: open it yourself)"))
