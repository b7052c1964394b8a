"""``QualityFilter``, the quality stage: Gopher / C4 / FineWeb heuristics per row.

A row is rejected by the first rule it fails (``options.RULE_ORDER``, cheap rules
first) with reason = the rule's name and a detail naming the rule, the measured
value, the threshold crossed, the row's language and script. Rules are chosen per
row from its language (the ``lang`` column, when langid ran) and writing system
(the ``script`` column, or detected here). No columns are added; no Beam here.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xlcorpus.transforms.core.accounting import split_rows
from xlcorpus.transforms.core.stage import Stage, StageResult
from xlcorpus.transforms.stages.quality.options import RULE_ORDER, QualityOptions, Rule, merge
from xlcorpus.transforms.stages.quality.rules import Failure, evaluate
from xlcorpus.transforms.text.languages import normalize_lang_code
from xlcorpus.transforms.text.scripts import writing_systems

STAGE = "quality"
UNDETERMINED = "und"  # counter label of a row with neither language nor script
ROWS = "rows"  # counter prefix: rows seen per language (the denominators of the report's rates)
COUNT_RULES = ("word_count", "stop_words")  # values and thresholds that are counts


def row_label(lang: str | None, script: str | None) -> str:
    """What a row's counters are keyed by: its language, else its script."""
    return lang or script or UNDETERMINED


def detail(failure: Failure, lang: str | None, script: str | None) -> dict:
    """A rejected row's ``detail``: the rule, its measured value (4 decimals), the
    threshold crossed, the row's language and script, and the rule's extras."""
    def num(x: float):
        return int(x) if failure.rule in COUNT_RULES else round(x, 4)

    return {"rule": failure.rule, "value": num(failure.value), "threshold": num(failure.threshold),
            "lang": lang, "script": script, **failure.extra}


class QualityFilter(Stage[QualityOptions]):
    """Rejects rows failing a quality rule; keeps the rest unchanged. Counters
    ``<rule>.<lang>`` (rejections) and ``rows.<lang>`` go to the report's ``quality``
    section as rejections per rule and language."""

    name = STAGE
    Options = QualityOptions
    fields = ()
    report_counters = True

    def __init__(self, options: QualityOptions | None = None, **context):
        super().__init__(options, **context)
        self._rules: dict[tuple[str | None, str | None], dict[str, Rule]] = {}

    def rules_for(self, lang: str | None, script: str | None) -> dict[str, Rule]:
        key = (lang, script)
        if key not in self._rules:
            self._rules[key] = self.options.resolve(lang, script)
        return self._rules[key]

    def languages_and_scripts(self, batch: pa.RecordBatch) -> tuple[np.ndarray, list[tuple[str | None, str | None]]]:
        """Each row's index into the batch's distinct (language, script) pairs, and the pairs."""
        n, names = batch.num_rows, batch.schema.names
        lang = batch.column("lang") if "lang" in names else pa.nulls(n, pa.string())
        script = batch.column("script") if "script" in names else None
        if script is None or script.null_count:
            detected = writing_systems(batch.column("text"))[0]  # langid did not run (or left gaps)
            script = detected if script is None else pc.coalesce(script, detected)
        key = pc.binary_join_element_wise(pc.fill_null(lang, ""), pc.fill_null(script, ""), "\x1f")
        encoded = key.dictionary_encode()
        pairs = []
        for k in encoded.dictionary.to_pylist():
            code, _, sc = k.partition("\x1f")
            pairs.append((normalize_lang_code(code) if code else None, sc or None))
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), pairs

    def process(self, batch: pa.RecordBatch) -> StageResult:
        if batch.num_rows == 0:
            return StageResult(batch)
        group, pairs = self.languages_and_scripts(batch)
        failures = evaluate(batch.column("text"), group, [self.rules_for(*p) for p in pairs])
        stats: Counter = Counter()
        for g, rows in enumerate(np.bincount(group, minlength=len(pairs)).tolist()):
            stats[f"{ROWS}.{row_label(*pairs[g])}"] += rows
        verdicts: list[tuple[str, dict] | None] = []
        for i, failure in enumerate(failures):
            if failure is None:
                verdicts.append(None)
                continue
            lang, script = pairs[group[i]]
            verdicts.append((failure.rule, detail(failure, lang, script)))
            stats[f"{failure.rule}.{row_label(lang, script)}"] += 1
        kept, rejected = split_rows(batch, batch, verdicts, STAGE)
        return StageResult(kept, rejected, stats=dict(stats))

    def counters_report(self, counters: dict[str, int]) -> dict:
        """The report's ``quality`` section: rows, rejections per rule and language, the rules."""
        by_rule: dict[str, dict[str, int]] = {rule: {} for rule in RULE_ORDER}
        rows: dict[str, int] = {}
        for name, value in counters.items():
            head, _, label = name.partition(".")
            if label and head in by_rule:
                by_rule[head][label] = value
            elif label and head == ROWS:
                rows[label] = value

        def ranked(d: dict[str, int]) -> dict[str, int]:
            return dict(sorted(d.items(), key=lambda kv: (-kv[1], kv[0])))

        return {"rows": {k: counters.get(k, 0) for k in ("in", "kept", "rejected", "dead_letter")},
                "rows_by_language": ranked(rows),
                "rejections_by_rule": {rule: ranked(d) for rule, d in by_rule.items()},
                "rules": self.rules_summary()}

    def rules_summary(self) -> dict[str, dict]:
        """Each rule's configured fields plus the script and language overrides that touch it."""
        out = {}
        for rule, fields in self.options.rules().items():
            entry: dict = dict(fields)
            for kind, code, patch in self.options.overrides():
                if rule in patch:
                    where = entry.setdefault(kind, {})
                    where[code] = merge(where.get(code, {}), patch[rule])
            out[rule] = entry
        return out
