"""Span scoring and tag <-> span conversion, with seqeval's strict IOB2 reading: an
entity is a ``B-x`` followed by its ``I-x``; a stray ``I-x`` is no entity, and a
predicted span counts only if its start, end and type all match a gold span."""

from __future__ import annotations

from collections.abc import Sequence

from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2, Entities


def span_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict:
    """Micro precision / recall / F1 over exact-match entity spans (seqeval strict mode)."""
    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise ValueError("gold and predicted tag sequences differ in shape")
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    return {"precision": float(precision_score(gold, pred, **kw)), "recall": float(recall_score(gold, pred, **kw)),
            "f1": float(f1_score(gold, pred, **kw)),
            "gold_entities": sum(len(s) for s in Entities([list(g) for g in gold], IOB2).entities),
            "predicted_entities": sum(len(s) for s in Entities([list(p) for p in pred], IOB2).entities)}


def word_spans(tokens: Sequence[str], tags: Sequence[str], text: str | None = None) -> list[dict]:
    """IOB2 word tags -> character spans ``{start, end, label}`` into ``text`` (default:
    the tokens joined by single spaces), read as ``span_prf`` reads them."""
    text = " ".join(tokens) if text is None else text
    starts, pos = [], 0
    for tok in tokens:
        pos = text.index(tok, pos)
        starts.append(pos)
        pos += len(tok)
    if not tokens:
        return []
    out = []
    for ent in Entities([list(tags)], IOB2).entities[0]:
        s, e = ent.start, ent.end  # word indices, end exclusive
        out.append({"start": starts[s], "end": starts[e - 1] + len(tokens[e - 1]), "label": ent.tag})
    return out
