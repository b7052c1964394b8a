"""Self-consistency: each sample's valid answer is put to a plurality vote; the
confidence is the winning share of all samples, and a row's outcome (kept, rejected
with every error and raw exchange, or dead letter) follows from its samples."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xlcorpus.transforms.stages.annotate.tasks import Task


@dataclass
class Answer:
    value: dict  # the model's answer, cleaned (items deduplicated)
    annotation: dict  # value + the offsets the stage found
    spans: list[dict] | None
    label: str | None
    key: str = ""  # identity for the vote: canonical JSON, items in any order


def vote_key(task: Task, value: dict) -> str:
    def canon(v):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    if task.items:
        value = {**value, task.items: sorted(canon(i) for i in value[task.items])}
    return canon(value)


def vote(answers: Sequence[Answer | None], n: int) -> tuple[Answer | None, float]:
    """Plurality over the valid answers (ties: the lowest sample wins); confidence is the
    winner's share of all ``n`` samples, invalid ones included."""
    valid = [a for a in answers if a is not None]
    if not valid:
        return None, 0.0
    counts = Counter(a.key for a in valid)
    best = max(counts.values())
    winner = next(a for a in valid if counts[a.key] == best)
    return winner, best / n


@dataclass
class RowResult:
    status: str  # kept | rejected | dead_letter
    answer: Answer | None = None
    confidence: float | None = None
    exchanges: list[dict] = field(default_factory=list)
    reason: str | None = None
    detail: dict | None = None
    error: Exception | None = None


# One sample's outcome: (answer or None, its errors, its exchanges, the last prompt stage).
Sample = tuple[Answer | None, list[str], list[dict], str]


def settle(samples: Sequence[Sample], exchanges: list[dict], min_confidence: float) -> RowResult:
    """The row's result from its samples (all of which got an answer from the model)."""
    winner, confidence = vote([s[0] for s in samples], len(samples))
    if winner is None:
        errors = [{"sample": i, "stage": s[3], "errors": s[1]} for i, s in enumerate(samples)]
        return RowResult("rejected", exchanges=exchanges, reason="invalid_answer",
                         detail={"errors": errors, "raw": exchanges})
    if confidence < min_confidence:
        return RowResult("rejected", winner, confidence, exchanges, "low_confidence",
                         {"confidence": confidence, "raw": exchanges})
    return RowResult("kept", winner, confidence, exchanges)
