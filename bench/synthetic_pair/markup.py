"""Spans, markers and files of the synthetic pair: word widening, IOB2 tags,
``[ ... ]`` marking of one or all entities (and its inverse, the project's own
``parse_markers``), NER JSONL / CoNLL writers."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from bench.synthetic_pair.lexicon import CLOSE, OPEN
from xlcorpus.transforms.stages.project import markers

if TYPE_CHECKING:
    from bench.synthetic_pair.sentences import Pair


def word_span(text: str, start: int, end: int) -> tuple[int, int]:
    """``(start, end)`` widened to whole space-delimited words of ``text``."""
    s = text.rfind(" ", 0, start) + 1
    e = text.find(" ", end)
    return s, len(text) if e < 0 else e


def tags_from_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags of the space-delimited tokens of ``text`` (spans widened to words)."""
    starts, pos = [], 0
    for tok in text.split(" "):
        starts.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    tags = ["O"] * len(starts)
    for s, e, label in spans:
        inside = [k for k, (a, z) in enumerate(starts) if a < e and z > s]
        for j, k in enumerate(inside):
            tags[k] = ("B-" if j == 0 else "I-") + label
    return tags


def _insert_markers(text: str, start: int, end: int) -> str:
    return f"{text[:start]}{OPEN} {text[start:end]} {CLOSE}{text[end:]}"


def marked(pair: Pair, entity_index: int) -> tuple[str, str]:
    """Source and target with ``[ ... ]`` around entity ``entity_index`` (target: word span)."""
    s, e, _ = pair.src_spans[entity_index]
    ts, te, _ = pair.tgt_word_spans[entity_index]
    return _insert_markers(pair.src_text, s, e), _insert_markers(pair.tgt_text, ts, te)


def marked_all(pair: Pair) -> tuple[str, str]:
    """Source and target with ``[ ... ]`` around every entity (target: word spans).

    What the marker method (EasyProject) feeds the model: all entities marked at once.
    Entities keep their own bracket pair even when adjacent; target word spans never
    overlap (one entity per target word), so the brackets are never nested.
    """
    def mark(text: str, spans) -> str:
        for s, e, _ in sorted(spans, key=lambda x: x[0], reverse=True):  # right to left: offsets stay valid
            text = _insert_markers(text, s, e)
        return text

    return mark(pair.src_text, pair.src_spans), mark(pair.tgt_text, pair.tgt_word_spans)


def parse_markers(text: str) -> tuple[str, list[tuple[int, int]]]:
    """Inverse of the marking: text without ``[ `` / `` ]`` and the marked char spans
    (label projection's parser). Unbalanced, nested or empty markers raise ``ValueError``."""
    parsed = markers.parse_markers(text, OPEN, CLOSE)
    if isinstance(parsed, str):
        raise ValueError(f"{parsed}: {text!r}")
    return parsed


# -- NER files --------------------------------------------------------------------------
def ner_examples(pairs: Iterable[Pair], side: str = "src") -> list[dict]:
    """``{"text", "spans": [{"start", "end", "label"}]}`` rows of one side (target: word spans)."""
    if side not in ("src", "tgt"):
        raise ValueError("side must be 'src' or 'tgt'")
    rows = []
    for p in pairs:
        text, spans = (p.src_text, p.src_spans) if side == "src" else (p.tgt_text, p.tgt_word_spans)
        rows.append({"text": text, "spans": [{"start": s, "end": e, "label": lab} for s, e, lab in spans]})
    return rows


def write_jsonl(pairs: Iterable[Pair], path: str | Path, side: str = "src", with_target: bool = False) -> Path:
    """One NER example per line; ``with_target`` adds the gold translation and its spans
    (``tgt_text``, ``tgt_spans`` strict, ``tgt_word_spans``) for evaluation."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs = list(pairs)
    with path.open("w", encoding="utf-8") as f:
        for p, row in zip(pairs, ner_examples(pairs, side)):
            if with_target:
                row["tgt_text"] = p.tgt_text
                row["tgt_spans"] = [{"start": s, "end": e, "label": lab} for s, e, lab in p.tgt_spans]
                row["tgt_word_spans"] = [{"start": s, "end": e, "label": lab} for s, e, lab in p.tgt_word_spans]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_conll(pairs: Iterable[Pair], path: str | Path, side: str = "src", docstart: bool = True) -> Path:
    """CoNLL/IOB2: ``token TAG`` per line, blank line between sentences."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        if docstart:
            f.write("-DOCSTART- O\n\n")
        for p in pairs:
            toks, tags = (p.src_tokens, p.src_tags) if side == "src" else (p.tgt_tokens, p.tgt_tags)
            for tok, tag in zip(toks, tags):
                f.write(f"{tok} {tag}\n")
            f.write("\n")
    return path
