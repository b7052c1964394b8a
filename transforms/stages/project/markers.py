"""Marker and text helpers of label projection (pure): ``[ ... ]`` marking and
parsing, SentencePiece detokenization with offsets, marker positions, word ids,
whitespace-tolerant offset mapping, IOB2 names and word/tag rows."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

from xlcorpus.transforms.backends.mt import SPACE
from xlcorpus.transforms.text.tokens import tokenize


def iob2_names(labels: Sequence[str]) -> list[str]:
    return ["O"] + [f"{p}-{label}" for label in labels for p in ("B", "I")]


def mark(text: str, spans: Sequence[dict], open_marker: str = "[", close_marker: str = "]") -> str:
    """``text`` with each span wrapped as ``[ span ]`` (markers spaced off, as words)."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        a, b = s["start"], s["end"]
        out.append(text[pos:a])
        if a > 0 and not text[a - 1].isspace():
            out.append(" ")
        out.append(f"{open_marker} {text[a:b]} {close_marker}")
        if b < len(text) and not text[b].isspace():
            out.append(" ")
        pos = b
    out.append(text[pos:])
    return "".join(out)


def detokenize(pieces: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """SentencePiece detokenization with each piece's character offsets (a piece's
    word-start space is not part of its offsets)."""
    chars, offsets, pos = [], [], 0
    for p in pieces:
        s = p.replace(SPACE, " ")
        if pos == 0 and s.startswith(" "):
            s = s.lstrip(" ")
            lead = 0
        else:
            lead = len(s) - len(s.lstrip(" "))
        chars.append(s)
        offsets.append((pos + lead, pos + len(s)))
        pos += len(s)
    return "".join(chars), offsets


def boundaries(pieces: Sequence[str], kind: str = "word") -> list[int]:
    """Positions (0..len) where a marker may go: word starts and the end ('word'), or
    between any two pieces ('piece')."""
    n = len(pieces)
    if kind == "piece":
        return list(range(n + 1))
    return [k for k in range(n) if k == 0 or pieces[k].startswith(SPACE)] + [n]


def word_ids(pieces: Sequence[str]) -> list[int]:
    """Word index of each piece (a piece starting with the SentencePiece space starts a word)."""
    out, w = [], -1
    for k, p in enumerate(pieces):
        if k == 0 or p.startswith(SPACE):
            w += 1
        out.append(w)
    return out


def to_original(text: str, det: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """Piece offsets on ``det`` (the detokenized pieces) moved onto ``text`` when the two
    differ only in whitespace (SentencePiece normalises it); None if they differ more."""
    if det == text:
        return offsets
    a_words = [(m.start(), m.end()) for m in re.finditer(r"\S+", det)]
    b_words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if len(a_words) != len(b_words) or any(det[a:b] != text[c:d] for (a, b), (c, d) in zip(a_words, b_words)):
        return None
    shift = {}
    for (a, b), (c, _d) in zip(a_words, b_words):
        for k in range(a, b + 1):
            shift[k] = c - a
    return [(s + shift.get(s, 0), e + shift.get(e, shift.get(e - 1, 0))) for s, e in offsets]


def tokens_and_tags(text: str, spans: Sequence[dict], names: Sequence[str]) -> tuple[list[str], list[int]]:
    """Words of ``text`` (split further at span edges inside a word) and IOB2 tag ids."""
    index = {n: k for k, n in enumerate(names)}
    cuts = sorted({s["start"] for s in spans} | {s["end"] for s in spans})
    toks: list[tuple[int, int]] = []
    for t in tokenize(text):
        if t.kind == "space":
            continue
        a = t.start
        for c in cuts:
            if t.start < c < t.end:
                toks.append((a, c))
                a = c
        toks.append((a, t.end))
    tags = []
    for a, b in toks:
        tag = "O"
        for s in spans:
            if s["start"] <= a and b <= s["end"]:
                tag = ("B-" if not any(s["start"] <= a2 and b2 <= s["end"] for a2, b2 in toks if b2 <= a)
                       else "I-") + s["label"]
                break
        if tag not in index:
            raise KeyError(f"label {tag!r} is not among the ClassLabel names {list(names)}")
        tags.append(index[tag])
    return [text[a:b] for a, b in toks], tags


def overlapping(spans: Sequence[dict]) -> tuple[dict, dict] | None:
    ordered = sorted(spans, key=lambda s: (s["start"], s["end"]))
    for a, b in itertools.pairwise(ordered):
        if b["start"] < a["end"]:
            return a, b
    return None


def parse_markers(text: str, open_marker: str = "[", close_marker: str = "]"
                  ) -> tuple[str, list[tuple[int, int]]] | str:
    """Marked translation -> (clean text, bracketed spans on it), or a failure reason
    (``malformed_markers``: unbalanced or nested; ``empty_marker``: nothing inside)."""
    pattern = re.compile(f"({re.escape(open_marker)}|{re.escape(close_marker)}|[^\\s{re.escape(open_marker)}"
                         f"{re.escape(close_marker)}]+)")
    clean: list[str] = []
    spans: list[tuple[int, int]] = []
    prev_end, start = None, None
    out_pos = 0
    for m in pattern.finditer(text):
        tok = m.group()
        if tok == open_marker:
            if start is not None:
                return "malformed_markers"
            start = -1  # set by the next word
        elif tok == close_marker:
            if start is None:
                return "malformed_markers"
            if start == -1:
                return "empty_marker"
            spans.append((start, out_pos))
            start = None
        else:
            if prev_end is not None and clean:
                gap = text[prev_end:m.start()]
                glued = not any(c.isspace() for c in gap)
                if not glued:
                    clean.append(" ")
                    out_pos += 1
            if start == -1:
                start = out_pos
            clean.append(tok)
            out_pos += len(tok)
        prev_end = m.end()
    if start is not None:
        return "malformed_markers"
    return "".join(clean), spans
