"""Quality heuristics (Gopher, C4, FineWeb) as the ``quality`` stage.

Modules: ``options`` (each rule's thresholds, per-script and per-language overrides),
``rules`` (measurements and verdicts, vectorised per batch) and ``stage``
(``QualityFilter``). No Beam.
"""

from xlcorpus.transforms.stages.quality.options import (
    LANGUAGE_DEFAULTS, RULE_ORDER, RULES, SCRIPT_DEFAULTS, QualityOptions,
)
from xlcorpus.transforms.stages.quality.rules import (
    Failure, LineStats, Measures, duplicate_ngram_fractions, evaluate, line_stats, measure, top_ngram_fractions,
)
from xlcorpus.transforms.stages.quality.stage import STAGE, QualityFilter, detail

__all__ = [
    "LANGUAGE_DEFAULTS", "RULES", "RULE_ORDER", "SCRIPT_DEFAULTS", "STAGE", "Failure", "LineStats", "Measures",
    "QualityFilter", "QualityOptions", "detail", "duplicate_ngram_fractions", "evaluate", "line_stats", "measure",
    "top_ngram_fractions",
]
