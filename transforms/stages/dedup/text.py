"""What dedup compares: normalised texts, their exact hashes, and their shingles.

No Beam. Everything works on a whole batch at once: Arrow's RE2 kernels collapse
punctuation and space, words are hashed once per distinct word
(``dictionary_encode``), and shingles are built from the word (or character) hashes
with numpy.
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from xlcorpus.transforms.stages.dedup.options import NormalizeOptions
from xlcorpus.transforms.text.scripts import script_counts

# Scripts written without spaces between words: shingles are character n-grams there.
UNSPACED_SCRIPTS = ("Hani", "Hira", "Kana", "Thai", "Khmr", "Laoo", "Mymr")
UNSPACED_MIN_SHARE = 0.5  # of a text's script-bearing characters

_U64 = np.uint64
_M1, _M2 = _U64(0xBF58476D1CE4E5B9), _U64(0x94D049BB133111EB)  # splitmix64 finaliser constants
_GOLDEN = _U64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective 64-bit mix (vectorised; wraps on overflow)."""
    x = x.astype(_U64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> _U64(30)
        x *= _M1
        x ^= x >> _U64(27)
        x *= _M2
        x ^= x >> _U64(31)
    return x


def normalize(texts: pa.Array, o: NormalizeOptions) -> pa.Array:
    """The normalised texts (see ``NormalizeOptions``): one Arrow pass per step."""
    out = pc.fill_null(texts, "")
    # Python, not Arrow, for these two: Arrow's utf8_normalize (pyarrow 25) leaves
    # combining marks uncomposed, and it only has simple lower-casing, not case folding.
    form = None if o.form == "none" else o.form
    if form or o.casefold:
        def fold(t: str) -> str:
            if form:
                t = unicodedata.normalize(form, t)
            if o.casefold:
                t = t.casefold()
                t = unicodedata.normalize(form, t) if form else t  # folding can undo composition (e.g. U+0130)
            return t
        out = pa.array([fold(t) for t in out.to_pylist()], pa.string())
    if o.digits:
        out = pc.replace_substring_regex(out, r"\p{Nd}+", "0")
    if o.punctuation:
        out = pc.replace_substring_regex(out, r"[\p{P}\p{S}]+", " ")
    if o.whitespace:
        out = pc.utf8_trim_whitespace(pc.replace_substring_regex(out, r"[\s\p{Z}]+", " "))
    return out


def text_hashes(normalized: pa.Array) -> np.ndarray:
    """64-bit xxh3 of each normalised text (stable across processes, unlike ``hash``)."""
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(t.encode()) for t in normalized.to_pylist()), dtype=_U64, count=len(normalized))


def row_keys(batch: pa.RecordBatch) -> np.ndarray:
    """A 64-bit key per row from (id, source, line): the same on every runner and under
    any batching. Near-duplicate clusters keep their smallest key."""
    h = xxhash.xxh3_64_intdigest
    cols = zip(batch.column("id").to_pylist(), batch.column("source").to_pylist(), batch.column("line").to_pylist())
    return np.fromiter((h(f"{i}\x1f{s}\x1f{n}".encode()) for i, s, n in cols), dtype=_U64, count=batch.num_rows)


def unspaced(texts: pa.Array) -> np.ndarray:
    """True where most of a text's letters are in a script written without spaces."""
    counts, codes = script_counts(texts)
    cols = [codes.index(c) for c in UNSPACED_SCRIPTS if c in codes]
    total = counts.sum(axis=1)
    return counts[:, cols].sum(axis=1) >= UNSPACED_MIN_SHARE * np.maximum(total, 1)


def _word_units(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word, words per text); each distinct word hashed once."""
    words = pc.utf8_split_whitespace(texts)
    flat, parents = pc.list_flatten(words), pc.list_parent_indices(words).to_numpy(zero_copy_only=False)
    real = pc.greater(pc.utf8_length(flat), 0)  # "" splits into one empty word
    flat, parents = flat.filter(real), parents[real.to_numpy(zero_copy_only=False)]
    counts = np.bincount(parents, minlength=len(texts)).astype(np.int64)
    if len(flat) == 0:
        return np.zeros(0, _U64), counts
    encoded = pc.dictionary_encode(flat)
    h = xxhash.xxh3_64_intdigest
    vocab = np.fromiter((h(w.encode()) for w in encoded.dictionary.to_pylist()), dtype=_U64, count=len(encoded.dictionary))
    return vocab[encoded.indices.to_numpy(zero_copy_only=False)], counts


def _char_units(texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(mixed code point of every non-space character, characters per text)."""
    squeezed = pc.replace_substring(texts, " ", "")
    joined = "".join(squeezed.to_pylist())
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return mix64(cps.astype(_U64) ^ _GOLDEN), pc.utf8_length(squeezed).to_numpy(zero_copy_only=False).astype(np.int64)


def ngram_hashes(units: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of the n-grams of consecutive units within each text, and how many each
    text has. A text shorter than ``n`` units is one shingle of all of them; an empty
    text has none."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    grams = np.where(lengths > 0, np.maximum(lengths - n + 1, 1), 0)
    total = int(grams.sum())
    if total == 0:
        return np.zeros(0, _U64), grams
    text_of = np.repeat(np.arange(len(lengths)), grams)
    first = np.repeat(starts - np.concatenate([[0], np.cumsum(grams)[:-1]]), grams) + np.arange(total)
    width = np.minimum(lengths, n)[text_of]  # units in each shingle
    acc = np.zeros(total, _U64)
    with np.errstate(over="ignore"):
        for k in range(n):  # polynomial combination: order matters, as in a word n-gram
            take = k < width
            acc[take] = acc[take] * _GOLDEN + units[first[take] + k]
    return mix64(acc ^ width.astype(_U64)), grams


def shingles(normalized: pa.Array, word_ngram: int, char_ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of every text (concatenated) and the number per text: word
    n-grams, or character n-grams for texts in a script written without spaces."""
    n = len(normalized)
    by_char = unspaced(normalized)
    counts = np.zeros(n, np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # rows, hashes, per-row counts
    for mask, units_of, size in ((~by_char, _word_units, word_ngram), (by_char, _char_units, char_ngram)):
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            continue
        units, lengths = units_of(normalized.take(pa.array(rows)))
        hashes, grams = ngram_hashes(units, lengths, size)
        counts[rows] = grams
        parts.append((rows, hashes, grams))
    # back into row order: each text's shingles contiguous, texts in batch order
    order_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.zeros(int(counts.sum()), _U64)
    for rows, hashes, grams in parts:
        dest = np.repeat(order_start[rows], grams) + (
            np.arange(len(hashes)) - np.repeat(np.concatenate([[0], np.cumsum(grams)[:-1]]), grams))
        out[dest] = hashes
    return out, counts
