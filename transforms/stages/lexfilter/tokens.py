"""Text normalisation and word tokenisation shared by the lexicon and the sentence scores.

Both sides are compared in one form (NFC, ASCII apostrophes/hyphens, optionally
lowercased and diacritic-folded); ``token_rows`` / ``tokenize_batch`` tokenise a whole
batch in one pass and say which row each token came from.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

# A word starts with a letter, continues with letters and combining marks, and may hold
# single internal apostrophes or hyphens ("ng'ombe", "mwana-mke"); anything else separates.
WORD_PATTERN = r"\p{L}[\p{L}\p{M}]*(?:['\-][\p{L}\p{M}]+)*"
WORD = regex.compile(WORD_PATTERN)
# The same, plus NUL as a row separator, so a whole batch is tokenised in one call; for
# ASCII text (letters = A-Z, no marks) the stdlib engine does the same twice as fast.
_SEP_OR_WORD = regex.compile(rf"\x00|{WORD_PATTERN}")
_SEP_OR_ASCII_WORD = re.compile(r"\x00|[A-Za-z]+(?:['\-][A-Za-z]+)*")
# Canonical combining class != 0: accents, cedillas, virama, nukta ... (not Indic vowel
# signs, which are spacing or class-0 marks and part of the spelling).
_COMBINING = regex.compile(r"\P{ccc=0}+")
# Typographic apostrophes and hyphens -> ASCII, so "ng’ombe" and "ng'ombe" are one word.
_PUNCT = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2010": "-", "\u2011": "-"})


def normalize_text(text: str, lowercase: bool = True, fold_diacritics: bool = False) -> str:
    """The form both the lexicon and the scored sentences are compared in.

    Always NFC (so precomposed and decomposed spellings agree) with typographic
    apostrophes/hyphens made ASCII; ``lowercase`` uses ``str.lower``;
    ``fold_diacritics`` decomposes (NFD) and drops every mark with a non-zero
    canonical combining class, then recomposes ("é" -> "e", "ñ" -> "n").
    """
    if lowercase:
        text = text.lower()
    if text.isascii():
        return text
    text = text.translate(_PUNCT)
    if fold_diacritics:
        text = _COMBINING.sub("", unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFC", text)


def tokenize(text: str, lowercase: bool = True, fold_diacritics: bool = False) -> list[str]:
    """Normalised word tokens of one text (see ``WORD_PATTERN``)."""
    return WORD.findall(normalize_text(text, lowercase, fold_diacritics))


def tokenize_batch(texts: pa.Array | Sequence[str | None], lowercase: bool = True,
                   fold_diacritics: bool = False) -> tuple[pa.Array, np.ndarray]:
    """Tokens of every text, flattened, and the row each token came from.

    Same result as ``tokenize`` per text, but one normalisation pass and one regex
    pass over the whole batch (texts joined by NUL, which is never part of a word).
    Null texts have no tokens.
    """
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(list(texts), pa.string())
    n = len(texts)
    if n == 0:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    strs = pc.replace_substring(pc.fill_null(texts, ""), "\x00", " ").to_pylist()
    joined = normalize_text("\x00".join(strs), lowercase, fold_diacritics)
    tokens = pa.array((_SEP_OR_ASCII_WORD if joined.isascii() else _SEP_OR_WORD).findall(joined), pa.string())
    sep = pc.equal(tokens, "\x00").to_numpy(zero_copy_only=False)
    rows = np.cumsum(sep)[~sep]
    return tokens.filter(pa.array(~sep)), rows.astype(np.int64)


_ASCII_NON_LETTERS = "".join(chr(c) for c in range(128) if not chr(c).isalpha())


def token_rows(texts: pa.Array | Sequence[str | None], lowercase: bool = True, fold_diacritics: bool = False
               ) -> tuple[pa.Array, np.ndarray]:
    """``tokenize_batch``, faster: an all-ASCII batch is tokenised in Arrow without making a Python
    string per token: split at whitespace, trim non-letters off both ends; the few pieces
    that are then not one word ("a,b", "12", "x--y") go through the regex. Other batches
    take ``tokenize_batch``."""
    if not isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = pa.array(list(texts), pa.string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if len(texts) == 0 or pc.all(pc.string_is_ascii(texts)).as_py() is False:
        return tokenize_batch(texts, lowercase, fold_diacritics)
    if lowercase:
        texts = pc.ascii_lower(texts)
    pieces = pc.ascii_split_whitespace(texts)
    flat = pc.ascii_trim(pc.list_flatten(pieces), _ASCII_NON_LETTERS)
    rows = pc.list_parent_indices(pieces).to_numpy().astype(np.int64)
    word = (pc.match_substring_regex(flat, r"^[a-z]+(?:['\-][a-z]+)*$") if lowercase
            else pc.match_substring_regex(flat, r"^[A-Za-z]+(?:['\-][A-Za-z]+)*$")).to_numpy(zero_copy_only=False)
    if word.all():
        return flat, rows
    other = np.flatnonzero(~word)
    extra = [(p, t) for p, piece in zip(other.tolist(), flat.take(pa.array(other)).to_pylist())
             for t in _SEP_OR_ASCII_WORD.findall(piece) if t != "\x00"]
    # back into text order (the same float sums as tokenize_batch): by piece, stable
    piece = np.concatenate([np.flatnonzero(word), np.array([p for p, _ in extra], np.int64)])
    order = np.argsort(piece, kind="stable")
    tokens = pa.concat_arrays([flat.filter(pa.array(word)), pa.array([t for _, t in extra], pa.string())])
    return tokens.take(pa.array(order)), rows[piece[order]]

