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

from typing import NamedTuple

import regex

_TOKEN = regex.compile(
    r"""
    (?P<word>[\p{L}\p{M}]+(?:['’][\p{L}\p{M}]+)*(?:-(?=\p{L})|['’](?![\p{L}\p{M}]))?)
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
