"""Offset-preserving word tokenizer (shared by stages; not a stage itself).

Every character of the text belongs to exactly one token, so ``"".join(t.text for t
in tokens) == text`` and each token carries its [start, end) character offsets.
Kinds: ``word``, ``number``, ``space``, ``punct``.

Words follow the Maltese convention that the MLRS etymology data uses: a hyphen
that joins an article or preposition to the next word stays with the first part
(``il-kelb`` -> ``il-`` + ``kelb``), and an elided final letter's apostrophe stays
with its word (``ta'``). Internal apostrophes stay inside (``don't``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import regex

_WORD = r"[\p{L}\p{M}]+(?:['’][\p{L}\p{M}]+)*(?:-(?=\p{L})|['’](?![\p{L}\p{M}]))?"
_TOKEN = regex.compile(
    r"""
    (?P<word>""" + _WORD + r""")
  | (?P<number>\p{N}+(?:[.,]\p{N}+)*)
  | (?P<space>\s+)
  | (?P<punct>.)
    """,
    regex.VERBOSE | regex.DOTALL,
)


class Token(NamedTuple):
    text: str
    start: int
    end: int
    kind: str


def tokenize(text: str) -> list[Token]:
    new = tuple.__new__  # skips NamedTuple's argument parsing: this runs once per token
    return [new(Token, (m.group(), m.start(), m.end(), m.lastgroup)) for m in _TOKEN.finditer(text)]


def words(text: str) -> list[Token]:
    return [t for t in tokenize(text) if t.kind == "word"]


# Words alone, found by searching: no other kind of token contains a letter or a mark, and
# a word is tried first wherever one starts, so the search meets exactly tokenize's words.
_WORD_SPLIT = regex.compile(f"({_WORD})")
_SEPARATOR = "\n"  # between texts: not a letter or mark, and seen by the lookaheads like a text's end


class WordSpans(NamedTuple):
    """The words of many texts (tokenize's ``word`` tokens, in order): their text and,
    as int64 arrays, the text each is in and its [start, end) character offsets there;
    and the texts as one string (``joined``) with each word's start in it (``at``)."""
    text: list[str]
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    joined: str
    at: np.ndarray


def word_spans(texts: Sequence[str]) -> WordSpans:
    """The words of all ``texts`` with one regex split over their join: one string per
    word and arrays of positions (``tokenize`` builds a Token object per word, space and
    punctuation mark)."""
    joined = _SEPARATOR.join(texts)
    parts = _WORD_SPLIT.split(joined)  # gap, word, gap, word, ..., gap
    lengths = np.fromiter(map(len, parts), np.int64, len(parts))
    part_start = np.cumsum(lengths) - lengths
    at, size = part_start[1::2], lengths[1::2]
    text_lengths = np.fromiter(map(len, texts), np.int64, len(texts)) + len(_SEPARATOR)
    text_start = np.cumsum(text_lengths) - text_lengths
    row = np.searchsorted(text_start, at, side="right") - 1
    start = at - text_start[row]
    return WordSpans(parts[1::2], row, start, start + size, joined, at)
