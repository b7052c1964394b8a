"""What the fine-tuning modules share: the label models skip and the report's counters.

The stages' statistics for the run report (fertility, mix before/after, packing) are
flat counters ``{"section|lang": n}``; the job sums them with ``merge_stats`` and reads
one section back with ``stats_section``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

STAGE = "finetune"  # the stages' name: Beam counters xlcorpus.finetune, rejected/dead-letter rows
STATS = "stats"  # the output tag the report counters leave on
IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips


def merge_stats(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for p in parts:
        total.update(p)
    return dict(total)


def stats_section(stats: Mapping[str, int], section: str) -> dict[str, int]:
    prefix = section + "|"
    return {k[len(prefix):]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}
