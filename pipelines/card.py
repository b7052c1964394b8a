"""``DIR/README.md``: the Hugging Face dataset card of a corpus-job output.

A YAML header in the Hub's card format (``language``, ``license``,
``task_categories``, ``size_categories``, ``pretty_name``, ``configs`` with the data
files of every split), then the provenance from the run report: inputs, stage
counts, languages, models with their hashes and licences, and the config. No clock
readings and no output path: the card is as deterministic as the data.
"""

from __future__ import annotations

import json

import pycountry
import yaml

from xlcorpus.transforms.text.languages import is_language_code

# Licences of the models xlcorpus ships (facts from their publishers).
MODEL_LICENCES = {"langid": "CC BY-SA 3.0 (fastText lid.176.ftz, Joulin et al. 2016)"}
NOT_LANGUAGES = {"zxx", "und", "mul", "mis", "null"}


def size_category(rows: int) -> str:
    """The Hub's size bucket for ``rows`` (n<1K, 1K<n<10K, ..., n>1T)."""
    bounds = [(10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
              (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
              (10**11, "10B<n<100B"), (10**12, "100B<n<1T")]
    return next((name for bound, name in bounds if rows < bound), "n>1T")


def card_languages(languages: dict[str, int]) -> list[str]:
    """ISO 639 codes for the header: the two-letter code where one exists (the Hub's
    convention), else the three-letter one; no-language and undetermined codes left out."""
    out = []
    for code in languages:
        if code in NOT_LANGUAGES or not is_language_code(code):
            continue
        lang = pycountry.languages.get(alpha_3=code)
        short = getattr(lang, "alpha_2", None) if lang else None
        out.append(short or code)
    return sorted(set(out))


def data_files(report: dict, fmt: str) -> list[dict]:
    """``configs`` entries: one config per partition (or ``default``), a pattern per split
    (Parquet: only the splits that have rows, as the files are)."""
    splits = list(report["config"]["output"]["splits"]) or ["train"]  # config order: train first
    parts = sorted(report["partitions"]) or [""]
    rows: dict[tuple[str, str], int] = {}
    for s in report["shards"]:
        if s["kind"] == "dataset":
            rows[(s["partition"] or "", s["split"])] = rows.get((s["partition"] or "", s["split"]), 0) + s["rows"]

    def pattern(part: str, split: str) -> str:
        prefix = f"{part}/" if part else ""
        return f"{prefix}data/{split}-*.parquet" if fmt == "parquet" else f"{prefix}{split}/data-*.arrow"

    return [{"config_name": part or "default",
             "data_files": [{"split": s, "path": pattern(part, s)} for s in splits
                            if fmt != "parquet" or rows.get((part, s), 0)]}
            for part in parts]


def dataset_card(report: dict, license: str, fmt: str) -> str:
    header = {
        "pretty_name": report["name"],
        "language": card_languages(report["languages"]),
        "license": license,
        "task_categories": ["text-generation"],
        "size_categories": [size_category(report["accounting"]["kept"])],
        "configs": data_files(report, fmt),
        "tags": ["xlcorpus", "low-resource"],
    }
    acct = report["accounting"]
    load = ('datasets.load_dataset("parquet", data_dir="DIR")' if fmt == "parquet"
            else 'datasets.load_from_disk("DIR")')
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True).strip(), "---", "",
             f"# {report['name']}", "",
             f"Built with xlcorpus {report['xlcorpus_version']}: {acct['in']} input rows, "
             f"{acct['kept']} kept, {acct['rejected']} rejected, {acct['dead_letter']} dead letters. "
             f"Load it with `{load}`; rejected rows (with the stage and reason) are in `_rejected/`, rows that "
             "could not be read or processed in `_dead_letter/` (Arrow, `load_from_disk`).", "",
             "## Inputs", "", "| file | lines |", "|---|---|"]
    lines += [f"| `{i['source']}` | {i['lines']} |" for i in report["inputs"]]
    lines += ["", "## Stages", "", "| stage | in | kept | rejected | dead letter |", "|---|---|---|---|---|"]
    for s in report["stages"]:
        rejected = ", ".join(f"{r} {n}" for r, n in s["rejected"].items()) or "0"
        dead = ", ".join(f"{r} {n}" for r, n in s["dead_letter"].items()) or "0"
        lines.append(f"| {s['stage']} | {s['in']} | {s['kept']} | {rejected} | {dead} |")
    lines += ["", "## Languages", "", "| language | rows |", "|---|---|"]
    lines += [f"| {code} | {rows} |" for code, rows in report["languages"].items()]
    lines += ["", "## Splits", "", "| split | rows |", "|---|---|"]
    lines += [f"| {split} | {rows} |" for split, rows in report["splits"].items()]
    lines += ["", "## Models", ""]
    for stage, entry in report["models"].items():
        licence = MODEL_LICENCES.get(stage) if entry.get("bundled") else None
        lines.append(f"- **{stage}**: `{json.dumps(entry, ensure_ascii=False, sort_keys=True)}`"
                     + (f"; licence {licence}" if licence else ""))
    config = {**report["config"], "output": {k: v for k, v in report["config"]["output"].items() if k != "path"}}
    lines += ["", "## Config", "", "```yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True).strip(),
              "```", ""]
    return "\n".join(lines)
