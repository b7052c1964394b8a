"""One projected sentence (``Projected``) and the last steps every method shares:
reject overlapping spans, move spans found on the detokenized template onto the
output text."""

from __future__ import annotations

from dataclasses import dataclass, field

from xlcorpus.transforms.stages.project.markers import overlapping, to_original


@dataclass
class Projected:
    """One projected sentence, or a rejection (``reason`` set)."""

    text: str = ""
    spans: list[dict] = field(default_factory=list)  # {start, end, label} on text
    span_scores: list[float] = field(default_factory=list)
    translation_score: float | None = None
    reason: str | None = None
    detail: dict | None = None
    sequences: int = 0  # sequences sent through the model for this sentence
    scored: int = 0  # constrained: placements scored exactly
    src_text: str | None = None  # translate-test: the translation the labels were predicted on
    src_spans: list[dict] | None = None  # translate-test: the predicted labels


def public(span: dict) -> dict:
    """A span without a method's working keys (score, offsets, needle)."""
    return {"start": span["start"], "end": span["end"], "label": span["label"]}


def conclude(r: Projected, det: str, offsets, spans_out: list[dict], fixed_text: str | None) -> None:
    """The spans one method found for a row: a conflict if two overlap, else the result."""
    if clash := overlapping(spans_out):
        r.reason, r.detail = "conflict", {"spans": [public(s) for s in clash]}
        return
    spans_out.sort(key=lambda s: s["start"])
    r.span_scores = [s["score"] for s in spans_out]
    finish(r, det, offsets, spans_out, fixed_text)


def finish(result: Projected, det: str, offsets, found: list[dict], fixed_text: str | None) -> Projected:
    """Char spans on the detokenized template -> on the output text."""
    text = det
    if fixed_text is not None:
        moved = to_original(fixed_text, det, offsets)
        if moved is None:
            result.reason, result.detail = "unmappable_text", {"detokenized": det}
            return result
        shift = dict(zip(offsets, moved))
        found = [{**s, "start": shift[s["_a"]][0], "end": shift[s["_b"]][1]} for s in found]
        text = fixed_text
    result.text = text
    result.spans = [{"start": s["start"], "end": s["end"], "label": s["label"]} for s in found]
    return result
