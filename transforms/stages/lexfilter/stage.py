"""Lexical-distance filtering: keep the source sentences lexically closest to a target language.

Use case: a tiny target language (e.g. Comorian) borrows data from a related
high-resource one (e.g. Swahili); only the source sentences whose words look most
like target words are kept. Distance is word-level normalised Levenshtein
(edit distance / length of the longer word) to the nearest word of a target
lexicon, averaged over the sentence; character n-gram profile distances are the
alternative metrics.

Core (no Beam): text normalisation and tokenisation, the target lexicon (built
from a reference corpus, stored as Parquet), an exact nearest-word index
(``NearestWordIndex``), sentence scores (``SentenceScorer``), the keep/reject
decision and a language-distance report. ``LexicalFilter`` is the thin Beam
transform around it; the lexicon is loaded once per worker process through
``apache_beam.utils.shared`` (only its path travels with the pipeline).

Word-distance caps (opt-in; the default is the exact nearest distance). Proving the
exact nearest word of a word that has no close lexicon word takes a scan of most of
the lexicon, so two options bound what counts as a neighbour; a word with no lexicon
word within the bound counts as distance 1.0 (rapidfuzz's ``score_cutoff`` convention):
``max_word_distance`` (normalised; small saving, see ``NearestWordIndex``) and
``max_word_edits`` (edit count; the fast mode: the deletion index answers alone, no
scan). Results with a cap are exactly those of brute force with the same cap
(``brute_force_nearest``); sentence scores then rise for sentences with far words, so
thresholds tuned without a cap need re-tuning.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations, repeat
from pathlib import Path

import apache_beam as beam
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import regex
from apache_beam.transforms.stats import ApproximateQuantiles
from apache_beam.utils import shared
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from xlcorpus.schemas import LEXFILTER_FIELDS
from xlcorpus.transforms.core.batch_fn import DEAD_LETTER, KEPT, REJECTED, BatchStageFn, rejected_rows
from xlcorpus.transforms.backends.model_cache import local_copy

log = logging.getLogger(__name__)
STAGE = "lexfilter"
NO_WORDS, LEXICALLY_DISTANT = "no_words", "lexically_distant"

# Columns this stage adds to kept rows (to move into schemas/ with the stage's metadata).

METRICS = ("levenshtein", "ngram_cosine", "ngram_out_of_place")
WEIGHTINGS = ("none", "length")

# --- normalisation and tokenisation ----------------------------------------------------
# A word starts with a letter, continues with letters and combining marks, and may hold
# single internal apostrophes or hyphens ("ng'ombe", "mwana-mke"); anything else separates.
WORD_PATTERN = r"\p{L}[\p{L}\p{M}]*(?:['\-][\p{L}\p{M}]+)*"
_WORD = regex.compile(WORD_PATTERN)
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
    return _WORD.findall(normalize_text(text, lowercase, fold_diacritics))


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


# --- the target lexicon ----------------------------------------------------------------
LEXICON_SCHEMA = pa.schema([pa.field("word", pa.string(), nullable=False),
                            pa.field("count", pa.int64(), nullable=False)])
_LEXICON_META = b"xlcorpus.lexicon"


@dataclass(frozen=True)
class LexiconOptions:
    lowercase: bool = True
    fold_diacritics: bool = False
    min_count: int = 1  # words seen fewer times are dropped (typos, noise)
    max_words: int | None = None  # keep only the most frequent words


def build_lexicon(texts: Iterable[str | None], options: LexiconOptions = LexiconOptions()) -> pa.Table:
    """Word-frequency table of a reference corpus: columns word, count; sorted by count
    descending, then word. The normalisation options travel in the schema metadata."""
    counts: Counter[str] = Counter()
    chunk: list[str] = []
    for text in texts:
        if text:
            chunk.append(text)
        if len(chunk) >= 2048:
            counts.update(_WORD.findall(normalize_text("\n".join(chunk), options.lowercase,
                                                       options.fold_diacritics)))
            chunk.clear()
    if chunk:
        counts.update(_WORD.findall(normalize_text("\n".join(chunk), options.lowercase, options.fold_diacritics)))
    items = sorted(((w, c) for w, c in counts.items() if c >= options.min_count), key=lambda wc: (-wc[1], wc[0]))
    if options.max_words is not None:
        items = items[: options.max_words]
    return _lexicon_table([w for w, _ in items], [c for _, c in items], options.lowercase, options.fold_diacritics,
                          tokens=sum(counts.values()))


def _lexicon_table(words: Sequence[str], counts: Sequence[int] | np.ndarray, lowercase: bool,
                   fold_diacritics: bool, tokens: int | None = None) -> pa.Table:
    meta = {"lowercase": lowercase, "fold_diacritics": fold_diacritics, "tokens": tokens}
    schema = LEXICON_SCHEMA.with_metadata({_LEXICON_META: orjson.dumps(meta)})
    return pa.Table.from_arrays([pa.array(list(words), pa.string()), pa.array(np.asarray(counts, np.int64))],
                                schema=schema)


def write_lexicon(table: pa.Table, path: str | Path) -> None:
    pq.write_table(table, str(path))


def read_lexicon(path: str | Path) -> Lexicon:
    return Lexicon.from_table(pq.read_table(str(path)))


class Lexicon:
    """Target words with their corpus counts (most frequent first) and how they were normalised."""

    def __init__(self, words: Sequence[str], counts: Sequence[int] | np.ndarray, lowercase: bool = True,
                 fold_diacritics: bool = False):
        if len(words) != len(counts):
            raise ValueError(f"lexicon has {len(words)} words but {len(counts)} counts")
        self.words = list(words)
        self.counts = np.asarray(counts, np.int64)
        self.lowercase, self.fold_diacritics = bool(lowercase), bool(fold_diacritics)

    @classmethod
    def from_table(cls, table: pa.Table) -> Lexicon:
        missing = {"word", "count"} - set(table.column_names)
        if missing:
            raise ValueError(f"lexicon table lacks column(s) {sorted(missing)}; has {table.column_names}")
        raw = (table.schema.metadata or {}).get(_LEXICON_META)
        meta = orjson.loads(raw) if raw else {}
        words = table.column("word").to_pylist()
        if any(w is None for w in words):
            raise ValueError("lexicon column 'word' holds nulls")
        return cls(words, pc.fill_null(table.column("count"), 0).to_numpy(),
                   meta.get("lowercase", True), meta.get("fold_diacritics", False))

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], lowercase: bool = True, fold_diacritics: bool = False
                    ) -> Lexicon:
        items = sorted(counts.items(), key=lambda wc: (-wc[1], wc[0]))
        return cls([w for w, _ in items], [c for _, c in items], lowercase, fold_diacritics)

    def __len__(self) -> int:
        return len(self.words)

    def to_table(self) -> pa.Table:
        return _lexicon_table(self.words, self.counts, self.lowercase, self.fold_diacritics)

    def top(self, n: int) -> Lexicon:
        return Lexicon(self.words[:n], self.counts[:n], self.lowercase, self.fold_diacritics)

    def normalized(self, lowercase: bool | None = None, fold_diacritics: bool | None = None) -> Lexicon:
        """The lexicon as seen with these options (None: as built). Words that become
        equal merge their counts. A lexicon cannot be un-lowercased or un-folded."""
        lower = self.lowercase if lowercase is None else bool(lowercase)
        fold = self.fold_diacritics if fold_diacritics is None else bool(fold_diacritics)
        if (self.lowercase and not lower) or (self.fold_diacritics and not fold):
            raise ValueError(f"the lexicon was built with lowercase={self.lowercase}, fold_diacritics="
                             f"{self.fold_diacritics}; it cannot be compared with lowercase={lower}, "
                             f"fold_diacritics={fold} (rebuild it with those options)")
        if (lower, fold) == (self.lowercase, self.fold_diacritics):
            return self
        merged: Counter[str] = Counter()
        for word, count in zip(self.words, self.counts.tolist()):
            for token in tokenize(word, lower, fold):
                merged[token] += count
        return Lexicon.from_counts(merged, lower, fold)

    def index(self, max_deletes: int = 1, memo_size: int = 0, max_distance: float | None = None,
              max_edits: int | None = None) -> NearestWordIndex:
        return NearestWordIndex(self.words, max_deletes=max_deletes, memo_size=memo_size,
                                max_distance=max_distance, max_edits=max_edits)

    @cached_property
    def _profiles(self) -> dict[int, NgramProfile]:
        return {}

    def profile(self, size: int = 400) -> NgramProfile:
        """Character n-gram profile of the lexicon's running text (n-grams weighted by word count)."""
        if size not in self._profiles:
            grams: Counter[str] = Counter()
            for word, count in zip(self.words, self.counts.tolist()):
                for g in word_ngrams(word):
                    grams[g] += count
            self._profiles[size] = NgramProfile.from_counts(grams, size)
        return self._profiles[size]


# --- exact nearest-word search ---------------------------------------------------------
# Words longer than this stay out of the deletion index (C(n, k) variants each); their
# buckets and queries fall back to the plain bound in the bucket scan.
_MAX_INDEXED_LENGTH = 32

# Polynomial hash (mod 2**64) of a string's code points; a deletion variant's hash is
# computed from the code-point matrix of all words of one length at once, no string built.
# Equal strings hash equally; the rare collision only adds a candidate that rapidfuzz rejects.
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)


@functools.lru_cache(maxsize=512)
def _kept_positions(n: int, d: int) -> np.ndarray:
    """Positions kept by each way of deleting d of n characters: (C(n, d), n - d)."""
    rows = [[p for p in range(n) if p not in dropped] for dropped in combinations(range(n), d)]
    return np.array(rows, np.intp).reshape(len(rows), n - d)


def _variant_hashes(words: Sequence[str], ids: np.ndarray, depths: Iterable[int]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every string obtained by deleting exactly d characters (d in ``depths``)
    from each word, and the id (from ``ids``) of the word each came from. A word with
    repeated letters yields some variants twice."""
    lengths = np.fromiter(map(len, words), np.int64, len(words))
    out_h, out_id = [], []
    depths = list(depths)
    for n in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == n)
        group_ids = ids[sel]
        if n == 0:
            if 0 in depths:
                out_h.append(np.zeros(sel.size, np.uint64))
                out_id.append(group_ids)
            continue
        codes = np.array([words[i] for i in sel.tolist()], dtype=f"<U{n}").view(np.uint32)
        codes = codes.reshape(sel.size, n).astype(np.uint64) + np.uint64(1)
        for d in depths:
            if d > n:
                continue
            keep = _kept_positions(n, d)
            h = np.zeros((sel.size, keep.shape[0]), np.uint64)
            for t in range(n - d):
                h = h * _HASH_BASE + codes[:, keep[:, t]]
            out_h.append(h.ravel())
            out_id.append(np.repeat(group_ids, keep.shape[0]))
    if not out_h:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    return np.concatenate(out_h), np.concatenate(out_id)


class NearestWordIndex:
    """Normalised Levenshtein distance from query words to their nearest lexicon word.

    ``normalised(a, b) = levenshtein(a, b) / max(len(a), len(b))`` (rapidfuzz's
    ``Levenshtein.normalized_distance`` with uniform weights). Results equal a brute-force
    minimum over the whole lexicon exactly; the search only skips work that cannot change
    the minimum:

    1. exact hits (distance 0) by hash lookup;
    2. every lexicon word within ``max_deletes`` edits of a query, via a deletion-
       neighbourhood index (two words are within k edits only if they share a string
       obtained by deleting <= k characters from each); candidates are verified with
       rapidfuzz, which gives each query an upper bound (words longer than 32 characters,
       on either side, skip this step);
    3. length buckets in order of their lower bound: a word of length m is at least
       ``max(k+1, |n-m|)`` edits from a length-n query it was not found near in step 2,
       i.e. at normalised distance >= that / max(n, m). Buckets whose bound reaches the
       query's best so far are never visited; the others are scanned with
       ``process.cdist`` (one call per query-length group and bucket, ``workers=1``)
       under a ``score_cutoff`` derived from the best so far. The scan asks for raw
       ``Levenshtein.distance`` (integer cutoffs, uint8 matrices a quarter the size of
       float32) and divides by max(n, m) itself: the same double division rapidfuzz's
       ``normalized_distance`` does, so the float32 results are bit-identical.

    Words far from every lexicon word (unrelated vocabulary, names) still cost close to a
    scan of the buckets of similar length (rapidfuzz's SIMD ``cdist`` costs the same per
    pair whatever its ``score_cutoff``); near words (cognates, inflections) are resolved by
    steps 1-2 and a few cheap bucket checks.

    Two optional caps change what is computed (both default to None: exact nearest):

    - ``max_distance`` (normalised, in [0, 1)): a word whose nearest lexicon word is
      farther than this gets 1.0, exactly what ``process.cdist(...,
      scorer=Levenshtein.normalized_distance, score_cutoff=max_distance)`` returns. Step 3
      then skips buckets that cannot hold a word within the cap and scans the rest with a
      cutoff of at most ``floor(max_distance * max(n, m))`` edits. This saves little time
      (a word with nothing within the cap still needs the scan that proves it).
    - ``max_edits`` (an edit count, 0-3): only lexicon words within this many edits count
      as neighbours; a word with none gets 1.0. The deletion index is then built to this
      depth and answers alone: no bucket scan at all except for words longer than 32
      characters. This is the fast mode (a few microseconds per distinct word with
      ``max_edits=1``): the score becomes the mean over words of "normalised distance to
      the nearest target word at most k edits away, else 1" -- a near-cognate coverage
      rather than the paper's unbounded nearest distance.

    With both, a neighbour must satisfy both. ``brute_force_nearest`` computes the same
    definitions by brute force.

    ``memo_size`` > 0 keeps results across calls (a worker sees the same words in every
    batch) in two generations (see ``_remember``), at most ``memo_size`` words.
    """

    def __init__(self, words: Iterable[str], *, max_deletes: int = 1, memo_size: int = 0,
                 max_distance: float | None = None, max_edits: int | None = None):
        unique = sorted(set(words))
        if not unique:
            raise ValueError("NearestWordIndex needs at least one lexicon word")
        if max_deletes < 0:
            raise ValueError("max_deletes must be >= 0")
        if max_distance is not None and not 0.0 <= max_distance < 1.0:
            raise ValueError(f"max_distance must be in [0, 1) or None, got {max_distance}")
        if max_edits is not None and not 0 <= max_edits <= 3:
            raise ValueError(f"max_edits must be 0-3 or None, got {max_edits}")
        self.words = unique
        # With max_edits the deletion index alone answers: it must reach exactly that deep.
        self.max_deletes = max_deletes if max_edits is None else int(max_edits)
        self.max_distance = None if max_distance is None else float(max_distance)
        self.max_edits = None if max_edits is None else int(max_edits)
        self._word_set = frozenset(unique)
        self._objects = np.array(unique, dtype=object)
        self._lengths = np.fromiter((len(w) for w in unique), np.int64, len(unique))
        self._buckets: dict[int, list[str]] = {}
        for w in unique:
            self._buckets.setdefault(len(w), []).append(w)
        self._bucket_lengths = np.array(sorted(self._buckets), np.int64)
        self._del_hash, self._del_word = self._build_deletion_index() if self.max_deletes else (None, None)
        if self._del_hash is not None:  # where each entry's run of equal hashes ends: one searchsorted a lookup
            size = self._del_hash.size
            starts = np.flatnonzero(np.r_[True, self._del_hash[1:] != self._del_hash[:-1]])
            self._run_end = np.repeat(np.r_[starts[1:], size], np.diff(np.r_[starts, size]))
        self.memo_size = memo_size
        # Two generations of memoised results: when the young one holds memo_size // 2
        # words it becomes the old one (and the previous old one is dropped); a word found
        # in the old generation moves back to the young one. Frequent words thus stay,
        # the tail is forgotten, and at most memo_size words are held.
        self._memo: dict[str, float] = {}
        self._memo_old: dict[str, float] = {}
        # Cap in edits for each possible max(len(query), len(word)) (grown on demand).
        self._cap_edits = np.zeros(0, np.int64)

    def __reduce__(self):
        # Rebuilt where unpickled (cheaper to ship the words than the index).
        return _rebuild_index, (self.words, self.max_deletes, self.memo_size, self.max_distance, self.max_edits)

    def cap_edits(self, longer: np.ndarray) -> np.ndarray:
        """Largest edit count k with k / longer <= max_distance, for each ``longer``
        (the max of the two word lengths); computed with the same float64 division the
        distances use, so "within the cap" means exactly ``normalised <= max_distance``."""
        longer = np.asarray(longer, np.int64)
        top = int(longer.max(initial=0))
        if top >= self._cap_edits.size:
            denom = np.arange(max(top + 1, 2 * self._cap_edits.size, 64), dtype=np.int64)
            k = np.floor(self.max_distance * denom).astype(np.int64)
            safe = np.maximum(denom, 1)
            k += ((k + 1) / safe <= self.max_distance)  # float rounding either way
            k -= (k / safe > self.max_distance) & (k > 0)
            self._cap_edits = np.where(denom > 0, k, 0)
        return self._cap_edits[longer]

    def _build_deletion_index(self) -> tuple[np.ndarray, np.ndarray]:
        short = np.flatnonzero(self._lengths <= _MAX_INDEXED_LENGTH)
        hashes, ids = [], []
        step = 8192  # bounded temporaries (C(n, k) variants per word)
        for start in range(0, short.size, step):
            part = short[start:start + step]
            h, i = _variant_hashes([self.words[j] for j in part.tolist()], part, range(self.max_deletes + 1))
            hashes.append(h)
            ids.append(i.astype(np.int32))
        if not hashes:  # every word longer than _MAX_INDEXED_LENGTH
            return np.zeros(0, np.uint64), np.zeros(0, np.int32)
        all_h, all_ids = np.concatenate(hashes), np.concatenate(ids)
        order = np.argsort(all_h, kind="stable")
        return all_h[order], all_ids[order]

    def nearest_distance(self, words: Sequence[str] | pa.Array) -> np.ndarray:
        """float32 array: for each word, its smallest normalised distance to a lexicon word.
        Each distinct word is searched once per call (a batch repeats its words a lot)."""
        if len(words) == 0:
            return np.zeros(0, np.float32)
        if isinstance(words, pa.ChunkedArray):
            words = words.combine_chunks()
        encoded = (words if isinstance(words, pa.Array) else pa.array(list(words), pa.string())).dictionary_encode()
        dist = self._nearest_unique(encoded.dictionary.to_pylist(), encoded.dictionary)
        return dist[encoded.indices.to_numpy(zero_copy_only=False)]

    def _nearest_unique(self, unique: list[str], array: pa.Array | None = None) -> np.ndarray:
        if not self.memo_size:
            return self._search(unique, array)
        nan = math.nan
        young, old = self._memo, self._memo_old
        out = np.fromiter(map(young.get, unique, repeat(nan)), np.float64, len(unique))
        miss = np.flatnonzero(np.isnan(out))
        if miss.size and old:
            back = [unique[i] for i in miss.tolist()]
            found = np.fromiter(map(old.get, back, repeat(nan)), np.float64, len(back))
            hit = ~np.isnan(found)
            if hit.any():
                out[miss[hit]] = found[hit]
                self._remember([w for w, h in zip(back, hit.tolist()) if h], found[hit].tolist())
                miss = miss[~hit]
        if miss.size:
            todo = [unique[i] for i in miss.tolist()]
            computed = self._search(todo, None if array is None else array.take(pa.array(miss)))
            out[miss] = computed
            self._remember(todo, computed.tolist())
        return out.astype(np.float32)

    def _remember(self, words: list[str], dists: list[float]) -> None:
        half = max(1, self.memo_size // 2)
        pos = 0
        while pos < len(words):
            if len(self._memo) >= half:
                self._memo_old, self._memo = self._memo, {}
            take = half - len(self._memo)
            self._memo.update(zip(words[pos:pos + take], dists[pos:pos + take]))
            pos += take

    def _search(self, queries: list[str], array: pa.Array | None = None) -> np.ndarray:
        """Nearest normalised distance of distinct queries (float64 inside, float32 out);
        ``array``: the same queries as Arrow strings, if at hand (lengths in C)."""
        q = len(queries)
        best = np.ones(q, np.float64)  # every distance is <= 1, so 1 is a valid start
        if q == 0:
            return best.astype(np.float32)
        qlen = (pc.utf8_length(array).to_numpy(zero_copy_only=False).astype(np.int64) if array is not None
                else np.fromiter(map(len, queries), np.int64, q))
        exact = np.fromiter(map(self._word_set.__contains__, queries), bool, q)
        best[exact] = 0.0
        rest = np.flatnonzero(~exact & (qlen > 0))
        indexed = rest[qlen[rest] <= _MAX_INDEXED_LENGTH]
        if indexed.size and self.max_deletes and self._del_hash.size:
            self._deletion_candidates(queries, qlen, indexed, best)
        self._scan_buckets(queries, qlen, rest, best)
        if self.max_distance is not None:
            best[best > self.max_distance] = 1.0  # nothing within the cap (as rapidfuzz's score_cutoff)
        return best.astype(np.float32)

    def _deletion_candidates(self, queries, qlen, rest, best) -> None:
        """Step 2: exact distances to every lexicon word within max_deletes edits.

        With max_deletes >= 2, one-deletion variants go first; a query only needs its
        (many more) deeper variants if no word found so far beats what a word >= 2 edits
        away could reach: 2 / (n + 2)."""
        k = self.max_deletes
        self._lookup(queries, qlen, *_variant_hashes([queries[i] for i in rest.tolist()], rest, range(min(k, 1) + 1)),
                     best)
        if k >= 2:
            deeper = rest[best[rest] * (qlen[rest] + 2) > 2]
            if deeper.size:
                self._lookup(queries, qlen, *_variant_hashes([queries[i] for i in deeper.tolist()], deeper,
                                                             range(2, k + 1)), best)

    def _lookup(self, queries, qlen, qh, owner, best) -> None:
        """Verify the lexicon words sharing a deletion variant (hash ``qh``) with query ``owner``."""
        order = np.argsort(qh)  # sorted needles: searchsorted walks the table in order
        qh, owner = qh[order], owner[order]
        lo = np.minimum(np.searchsorted(self._del_hash, qh, "left"), self._del_hash.size - 1)
        found = self._del_hash[lo] == qh
        hits = self._run_end[lo] - lo
        lo, hits, owner = lo[found], hits[found], owner[found]
        total = int(hits.sum())
        if total == 0:
            return
        starts = np.repeat(lo - (np.cumsum(hits) - hits), hits)
        pair_w = self._del_word[starts + np.arange(total)]
        key = np.sort(np.repeat(owner, hits) * len(self.words) + pair_w)
        key = key[np.r_[True, key[1:] != key[:-1]]]  # each (query, word) pair once
        pair_q, pair_w = key // len(self.words), key % len(self.words)
        # Words sharing a variant are <= 2k edits apart (k with max_edits: nothing farther
        # counts); rapidfuzz reports cutoff + 1 for farther pairs (hash collisions), dropped.
        cutoff = self.max_deletes if self.max_edits is not None else 2 * self.max_deletes
        d = process.cpdist([queries[i] for i in pair_q.tolist()], self._objects[pair_w].tolist(),
                           scorer=Levenshtein.distance, score_cutoff=cutoff, dtype=np.int32, workers=1)
        within = d <= cutoff
        if not within.all():
            d, pair_q, pair_w = d[within], pair_q[within], pair_w[within]
            if not d.size:
                return
        norm = d.astype(np.float64) / np.maximum(qlen[pair_q], self._lengths[pair_w])
        group = np.flatnonzero(np.r_[True, pair_q[1:] != pair_q[:-1]])  # pairs are sorted by query
        heads = pair_q[group]
        best[heads] = np.minimum(best[heads], np.minimum.reduceat(norm, group))

    def _scan_buckets(self, queries, qlen, rest, best) -> None:
        """Step 3: visit length buckets whose lower bound is below a query's best so far
        (and, with a cap, within the cap)."""
        if rest.size == 0:
            return
        m = self._bucket_lengths
        capped = self.max_distance is not None or self.max_edits is not None
        # Edits that any word step 2 did not find is at least away from the query (>= 1: not exact).
        floor = np.where(m <= _MAX_INDEXED_LENGTH, self.max_deletes + 1, 1)
        for n in np.unique(qlen[rest]).tolist():
            members = rest[qlen[rest] == n]
            longer = np.maximum(m, n)
            lower = np.maximum(floor if n <= _MAX_INDEXED_LENGTH else 1, np.abs(m - n))  # edits
            bound = lower / longer
            order = np.argsort(bound, kind="stable")
            if capped:  # the most edits a neighbour may be away, per bucket
                limit = (self.cap_edits(longer) if self.max_distance is not None
                         else np.full(m.size, self.max_edits, np.int64))
                if self.max_edits is not None:
                    limit = np.minimum(limit, self.max_edits)
                order = order[lower[order] <= limit[order]]  # buckets that cannot hold a word within the cap
            for b in order.tolist():
                active = members[best[members] > bound[b]]
                if active.size == 0:
                    break  # bounds only grow from here
                length, denom = int(m[b]), int(longer[b])
                # a distance d improves query i iff d < best[i] * denom
                cutoff = int(np.ceil(best[active].max() * denom)) - 1
                if capped:
                    cutoff = min(cutoff, int(limit[b]))
                bucket = self._buckets[length]
                dtype = np.uint8 if cutoff < 255 else np.int32
                rows = max(1, (1 << 22) // len(bucket))
                for s in range(0, active.size, rows):
                    chunk = active[s:s + rows]
                    raw = process.cdist([queries[i] for i in chunk.tolist()], bucket, scorer=Levenshtein.distance,
                                        score_cutoff=cutoff, dtype=dtype, workers=1)
                    dmin = raw.min(axis=1).astype(np.float64)
                    found = dmin <= cutoff
                    best[chunk[found]] = np.minimum(best[chunk[found]], dmin[found] / denom)


def _rebuild_index(words: list[str], max_deletes: int, memo_size: int, max_distance: float | None = None,
                   max_edits: int | None = None) -> NearestWordIndex:
    return NearestWordIndex(words, max_deletes=max_deletes, memo_size=memo_size, max_distance=max_distance,
                            max_edits=max_edits)


def brute_force_nearest(words: Sequence[str], lexicon_words: Sequence[str], max_distance: float | None = None,
                        max_edits: int | None = None) -> np.ndarray:
    """Reference: ``process.cdist`` over the whole lexicon (for benchmarks and checks), with
    the caps of ``NearestWordIndex``: ``max_distance`` is rapidfuzz's ``score_cutoff``
    (beyond it: 1.0); ``max_edits`` keeps only words within that many edits."""
    if not len(words):
        return np.zeros(0, np.float32)
    words, lexicon_words = list(words), list(lexicon_words)
    if max_edits is None:
        return process.cdist(words, lexicon_words, scorer=Levenshtein.normalized_distance,
                             score_cutoff=max_distance, dtype=np.float32, workers=1).min(axis=1)
    raw = process.cdist(words, lexicon_words, scorer=Levenshtein.distance, score_cutoff=max_edits, dtype=np.uint8,
                        workers=1)
    q, w = np.nonzero(raw <= max_edits)  # the few pairs within the cap
    longer = np.maximum(np.fromiter(map(len, words), np.int64, len(words))[q],
                        np.fromiter(map(len, lexicon_words), np.int64, len(lexicon_words))[w])
    norm = raw[q, w] / np.maximum(longer, 1)
    if max_distance is not None:
        norm[norm > max_distance] = 1.0
    out = np.ones(len(words), np.float64)
    np.minimum.at(out, q, norm)
    return out.astype(np.float32)


# --- character n-gram profiles -----------------------------------------------------------
def word_ngrams(word: str) -> list[str]:
    """Character 1-, 2- and 3-grams of a word padded with one space each side
    ("ab" -> a, b, " a", "ab", "b ", " ab", "ab "); the pad alone is not a gram."""
    padded = f" {word} "
    return (list(word) + [padded[i:i + 2] for i in range(len(padded) - 1)]
            + [padded[i:i + 3] for i in range(len(padded) - 2)])


@dataclass(frozen=True)
class NgramProfile:
    """The ``size`` most frequent n-grams (count desc, then gram), with their rank and
    their relative frequency within their order n (so 1-, 2- and 3-grams weigh alike)."""

    ranks: Mapping[str, int]
    weights: Mapping[str, float]
    norm: float

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], size: int) -> NgramProfile:
        totals = [0, 0, 0, 0]
        for g, c in counts.items():
            totals[len(g)] += c
        top = sorted(counts.items(), key=lambda gc: (-gc[1], gc[0]))[:size]
        weights = {g: c / totals[len(g)] for g, c in top}
        return cls({g: r for r, (g, _) in enumerate(top)}, weights,
                   math.sqrt(sum(w * w for w in weights.values())))

    def cosine_distance(self, other: NgramProfile) -> float:
        """1 - cosine similarity of the two profiles' weight vectors (1.0 if either is empty)."""
        if not self.norm or not other.norm:
            return 1.0
        small, large = (self, other) if len(self.weights) <= len(other.weights) else (other, self)
        dot = sum(w * large.weights.get(g, 0.0) for g, w in small.weights.items())
        return min(1.0, max(0.0, 1.0 - dot / (self.norm * other.norm)))

    def out_of_place(self, reference: NgramProfile) -> float:
        """Cavnar & Trenkle's out-of-place measure from this profile to ``reference``:
        sum over this profile's grams of |rank here - rank there|, a gram missing there
        costing the maximum P = len(reference); divided by len(self) * P -> [0, 1]."""
        penalty = len(reference.ranks)
        if not self.ranks or not penalty:
            return 1.0
        ref = reference.ranks
        total = sum(min(abs(r - ref[g]), penalty) if g in ref else penalty for g, r in self.ranks.items())
        return total / (len(self.ranks) * penalty)


# --- sentence scores -------------------------------------------------------------------------
class SentenceScorer:
    """Scores texts against a lexicon (lower = closer to the target language).

    ``levenshtein``: each word token's normalised Levenshtein distance to its nearest
    lexicon word, averaged over the sentence's tokens (repeats count each time).
    ``weighting="length"`` weights each token by its length in characters, so the score
    is the share of the sentence's letters that would have to change: one- to three-
    letter function words, whose distances are coarse (0, 1/3, 1/2, 1) and find a near
    neighbour in any lexicon by chance, then count less than the content words that
    carry the lexical signal. ``"none"`` is the plain mean the paper uses.

    ``ngram_cosine`` / ``ngram_out_of_place``: the sentence's character n-gram profile
    (see ``word_ngrams``, top ``profile_size``) against the lexicon's, as cosine
    distance or Cavnar & Trenkle out-of-place distance in [0, 1]; ``weighting`` does not
    apply.

    ``max_word_distance`` / ``max_word_edits`` cap the word distances (see
    ``NearestWordIndex``: a word with no lexicon word within the cap counts as 1.0).

    A text with no word scores NaN.
    """

    def __init__(self, lexicon: Lexicon, metric: str = "levenshtein", weighting: str = "none",
                 profile_size: int = 400, max_deletes: int = 1, memo_size: int = 0,
                 max_word_distance: float | None = None, max_word_edits: int | None = None):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.lexicon, self.metric, self.weighting, self.profile_size = lexicon, metric, weighting, profile_size
        if metric == "levenshtein":
            self.index = lexicon.index(max_deletes=max_deletes, memo_size=memo_size,
                                       max_distance=max_word_distance, max_edits=max_word_edits)
        else:
            self.reference = lexicon.profile(profile_size)

    def score(self, texts: pa.Array | Sequence[str | None]) -> np.ndarray:
        n = len(texts)
        if self.metric == "levenshtein":  # means need no token order
            return self._levenshtein(*token_rows(texts, self.lexicon.lowercase, self.lexicon.fold_diacritics), n)
        return self._ngram(*tokenize_batch(texts, self.lexicon.lowercase, self.lexicon.fold_diacritics), n)

    def _levenshtein(self, tokens: pa.Array, rows: np.ndarray, n: int) -> np.ndarray:
        dist = self.index.nearest_distance(tokens).astype(np.float64)
        weights = (pc.utf8_length(tokens).to_numpy(zero_copy_only=False).astype(np.float64)
                   if self.weighting == "length" else np.ones(len(dist)))
        total = np.bincount(rows, weights * dist, minlength=n)
        norm = np.bincount(rows, weights, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / norm).astype(np.float32)  # 0/0 -> NaN: no words

    def _ngram(self, tokens: pa.Array, rows: np.ndarray, n: int) -> np.ndarray:
        out = np.full(n, np.nan, np.float32)
        words = tokens.to_pylist()
        grams_of: dict[str, list[str]] = {}
        bounds = np.searchsorted(rows, np.arange(n + 1))
        for r in np.unique(rows).tolist():
            counts: Counter[str] = Counter()
            for w in words[bounds[r]:bounds[r + 1]]:
                g = grams_of.get(w)
                if g is None:
                    g = grams_of[w] = word_ngrams(w)
                counts.update(g)
            profile = NgramProfile.from_counts(counts, self.profile_size)
            out[r] = (profile.cosine_distance(self.reference) if self.metric == "ngram_cosine"
                      else profile.out_of_place(self.reference))
        return out


# --- options and decisions -------------------------------------------------------------------
@dataclass(frozen=True)
class LexFilterOptions:
    lexicon: str  # Parquet written by write_lexicon; only the path travels with the pipeline
    metric: str = "levenshtein"
    weighting: str = "none"  # "none" | "length" (levenshtein only; see SentenceScorer)
    threshold: float | None = None  # keep rows scoring <= threshold ...
    keep_fraction: float | None = None  # ... or the closest fraction (two passes, approximate quantile)
    lowercase: bool | None = None  # None: as the lexicon was built
    fold_diacritics: bool | None = None
    langs: Sequence[str] = ()  # ISO 639-3 codes of rows to score; others pass through. Empty: all
    profile_size: int = 400
    max_deletes: int = 1  # NearestWordIndex deletion neighbourhood
    word_cache_size: int = 200_000  # per-worker memo of word distances across batches
    # Word-distance caps (levenshtein; None: exact nearest distance). A word with no lexicon
    # word within max_word_distance (normalised) / within max_word_edits edits counts as 1.0.
    max_word_distance: float | None = None
    max_word_edits: int | None = None
    num_quantiles: int = 1001  # resolution of the keep_fraction cut (epsilon ~ 1/num_quantiles)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"lexfilter.metric must be one of {METRICS}, got {self.metric!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"lexfilter.weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        if (self.threshold is None) == (self.keep_fraction is None):
            raise ValueError("lexfilter needs exactly one of threshold or keep_fraction")
        if self.keep_fraction is not None and not 0 < self.keep_fraction <= 1:
            raise ValueError(f"lexfilter.keep_fraction must be in (0, 1], got {self.keep_fraction}")
        if self.max_word_distance is not None and not 0 <= self.max_word_distance < 1:
            raise ValueError(f"lexfilter.max_word_distance must be in [0, 1), got {self.max_word_distance}")
        if self.max_word_edits is not None and not 0 <= self.max_word_edits <= 3:
            raise ValueError(f"lexfilter.max_word_edits must be 0-3, got {self.max_word_edits}")
        object.__setattr__(self, "langs", tuple(str(c).strip().lower() for c in self.langs))


class LexFilterConfigError(ValueError):
    """A configuration problem seen only at run time (fails the run, not a row)."""


def score_batch(batch: pa.RecordBatch, scorer: SentenceScorer, langs: Sequence[str] = ()
                ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, applies): float32 scores (NaN for no words and for rows not scored) and
    which rows the filter applies to (``lang`` in ``langs``, or every row if empty)."""
    n = batch.num_rows
    if langs:
        if "lang" not in batch.schema.names:
            raise LexFilterConfigError("lexfilter.langs is set but the rows have no 'lang' column "
                                       "(run language identification first)")
        applies = pc.fill_null(pc.is_in(batch.column("lang"), pa.array(list(langs), pa.string())), False)
        applies = applies.to_numpy(zero_copy_only=False)
    else:
        applies = np.ones(n, bool)
    scores = np.full(n, np.nan, np.float32)
    if applies.all():
        scores[:] = scorer.score(batch.column("text"))
    elif applies.any():
        idx = np.flatnonzero(applies)
        scores[idx] = scorer.score(batch.column("text").take(pa.array(idx)))
    return scores, applies


def annotate(batch: pa.RecordBatch, scores: np.ndarray, applies: np.ndarray, metric: str) -> pa.RecordBatch:
    """``batch`` plus LEXFILTER_FIELDS (null on rows the filter does not apply to)."""
    distance = pa.array(scores, pa.float32(), mask=~applies)
    names = pa.array(np.where(applies, metric, None), pa.string())
    return batch.append_column(LEXFILTER_FIELDS[0], distance).append_column(LEXFILTER_FIELDS[1], names)


def select(scored: pa.RecordBatch, cut: float | None, metric: str, fraction: float | None = None
           ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """Split an annotated batch: rows with lex_distance > cut are rejected as
    ``lexically_distant``; unscored rows (null lex_distance) pass. ``cut`` None keeps all."""
    if cut is None:
        return scored, None
    dist = scored.column("lex_distance")
    far = pc.fill_null(pc.greater(dist, pa.scalar(cut, pa.float32())), False).to_numpy(zero_copy_only=False)
    if not far.any():
        return scored, None
    rows = np.flatnonzero(far)
    values = dist.to_numpy(zero_copy_only=False)
    details = []
    for i in rows.tolist():
        d = {"lex_distance": round(float(values[i]), 6), "threshold": round(float(cut), 6), "metric": metric}
        if fraction is not None:
            d["keep_fraction"] = fraction
        details.append(d)
    return scored.filter(pa.array(~far)), rejected_rows(scored, rows, [LEXICALLY_DISTANT] * rows.size, details,
                                                        STAGE)


def score_and_annotate(batch: pa.RecordBatch, scorer: SentenceScorer, opts: LexFilterOptions
                       ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """Pass 1: (annotated rows that have words or are not scored, rejected ``no_words`` rows)."""
    scores, applies = score_batch(batch, scorer, opts.langs)
    empty = applies & np.isnan(scores)
    annotated = annotate(batch, scores, applies, opts.metric)
    if not empty.any():
        return annotated, None
    rows = np.flatnonzero(empty)
    return (annotated.filter(pa.array(~empty)),
            rejected_rows(batch, rows, [NO_WORDS] * rows.size, [{"metric": opts.metric}] * rows.size, STAGE))


def filter_batch(batch: pa.RecordBatch, scorer: SentenceScorer, opts: LexFilterOptions
                 ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """Absolute threshold in one pass: (kept rows with LEXFILTER_FIELDS, rejected rows or None)."""
    annotated, no_words = score_and_annotate(batch, scorer, opts)
    kept, far = select(annotated, opts.threshold, opts.metric)
    parts = [r for r in (no_words, far) if r is not None]
    return kept, (parts[0] if len(parts) == 1 else pa.concat_batches(parts) if parts else None)


def cut_from_quantiles(quantiles: Sequence[float], fraction: float) -> float | None:
    """The score at ``fraction`` of the sorted scores, from evenly spaced quantiles
    (min ... max); None when nothing was scored."""
    if not quantiles:
        return None
    return float(quantiles[min(len(quantiles) - 1, round(fraction * (len(quantiles) - 1)))])


# --- Beam ------------------------------------------------------------------------------------
_SHARED_SCORERS = shared.Shared()


class _Holder:
    """shared.Shared needs a weak-referenceable object."""

    def __init__(self, scorer: SentenceScorer):
        self.scorer = scorer


def _load_scorer(opts: LexFilterOptions) -> SentenceScorer:
    lexicon = read_lexicon(local_copy(opts.lexicon)).normalized(opts.lowercase, opts.fold_diacritics)
    log.info("lexfilter: loaded %d words from %s", len(lexicon), opts.lexicon)
    return SentenceScorer(lexicon, opts.metric, opts.weighting, opts.profile_size, opts.max_deletes,
                          opts.word_cache_size, opts.max_word_distance, opts.max_word_edits)


class _BatchFn(BatchStageFn):
    """The lexicon's scorer, loaded once per worker, for the passes below."""

    stage = STAGE
    dead_reason = "lexfilter_error"
    fatal = (LexFilterConfigError,)

    def __init__(self, opts: LexFilterOptions):
        super().__init__()
        self.opts = opts
        self.scorer: SentenceScorer | None = None

    def setup(self):
        o = self.opts
        tag = orjson.dumps([o.lexicon, o.metric, o.weighting, o.lowercase, o.fold_diacritics, o.profile_size,
                            o.max_deletes, o.word_cache_size, o.max_word_distance, o.max_word_edits]).decode()
        self.scorer = _SHARED_SCORERS.acquire(lambda: _Holder(_load_scorer(o)), tag=tag).scorer


class _ThresholdFn(_BatchFn):
    """One pass: score and keep rows <= threshold."""

    def step(self, batch):
        return filter_batch(batch, self.scorer, self.opts)


class _ScoreFn(_BatchFn):
    """Pass 1 of keep_fraction: annotate scores, reject texts without words."""

    count_kept = False

    def step(self, batch):
        return score_and_annotate(batch, self.scorer, self.opts)


class _SelectFn(_BatchFn):
    """Pass 2 of keep_fraction: reject rows above the cut score (a side input)."""

    count_in = False

    def setup(self):  # works on the annotated scores; needs no lexicon
        pass

    def step(self, batch, cut):
        return select(batch, cut, self.opts.metric, self.opts.keep_fraction)


def _scored_values(batch: pa.RecordBatch) -> list[float]:
    """The scores of the rows the filter applies to (the quantile input)."""
    return pc.drop_null(batch.column("lex_distance")).to_numpy(zero_copy_only=False).tolist()


class LexicalFilter(beam.PTransform):
    """PCollection[RecordBatch] -> {kept, rejected, dead_letter}.

    Kept rows gain ``lex_distance`` and ``lex_metric``. With ``threshold`` one pass keeps
    rows scoring <= threshold. With ``keep_fraction`` pass 1 scores every batch, Beam's
    ``ApproximateQuantiles`` turns the scores into the cut score (a side input) and pass 2
    rejects rows above it; ties at the cut are all kept. Texts without a word are rejected
    as ``no_words`` and do not count towards the fraction. The quantile's rank error is at
    most about N / num_quantiles and may depend on how the runner bundles the scores, so
    byte-identical output across runners is guaranteed with ``threshold`` only.
    Rows the filter does not apply to (``langs``) pass with null ``lex_distance``.
    """

    def __init__(self, options: LexFilterOptions):
        super().__init__()
        self.opts = options

    def expand(self, batches):
        o = self.opts
        if o.threshold is not None:
            out = batches | "LexFilter" >> beam.ParDo(_ThresholdFn(o)).with_outputs(REJECTED, DEAD_LETTER,
                                                                                    main=KEPT)
            return {KEPT: out[KEPT], REJECTED: out[REJECTED], DEAD_LETTER: out[DEAD_LETTER]}
        scored = batches | "LexScore" >> beam.ParDo(_ScoreFn(o)).with_outputs(REJECTED, DEAD_LETTER, main="scored")
        cut = (scored["scored"]
               | "LexScores" >> beam.Map(_scored_values)
               | "LexQuantiles" >> ApproximateQuantiles.Globally(o.num_quantiles, input_batched=True)
               | "LexCut" >> beam.Map(cut_from_quantiles, o.keep_fraction))
        selected = scored["scored"] | "LexSelect" >> beam.ParDo(_SelectFn(o), beam.pvalue.AsSingleton(cut)
                                                                ).with_outputs(REJECTED, DEAD_LETTER, main=KEPT)
        rejected = (scored[REJECTED], selected[REJECTED]) | "LexRejected" >> beam.Flatten()
        dead = (scored[DEAD_LETTER], selected[DEAD_LETTER]) | "LexDeadLetter" >> beam.Flatten()
        return {KEPT: selected[KEPT], REJECTED: rejected, DEAD_LETTER: dead}


# --- language distance report ------------------------------------------------------------------
def language_distances(target: Lexicon, sources: Mapping[str, Lexicon], top_n: int = 2000,
                       profile_size: int = 400, max_deletes: int = 1) -> list[dict]:
    """How far each candidate source language is from the target, closest first.

    Per source: ``levenshtein`` = mean normalised Levenshtein distance of its ``top_n``
    most frequent words to their nearest target word, weighted by the source counts (so
    it estimates the distance of a running source token); ``ngram_cosine`` and
    ``ngram_out_of_place`` compare the n-gram profile of those words with the target's.
    Sources are normalised like the target lexicon.
    """
    index = target.index(max_deletes=max_deletes)
    reference = target.profile(profile_size)
    rows = []
    for lang, source in sources.items():
        top = source.normalized(target.lowercase, target.fold_diacritics).top(top_n)
        if not len(top):
            rows.append({"lang": lang, "words": 0, "levenshtein": float("nan"), "ngram_cosine": float("nan"),
                         "ngram_out_of_place": float("nan")})
            continue
        dist = index.nearest_distance(top.words).astype(np.float64)
        weights = top.counts.astype(np.float64)
        lev = float((dist * weights).sum() / weights.sum()) if weights.sum() > 0 else float(dist.mean())
        profile = top.profile(profile_size)
        rows.append({"lang": lang, "words": len(top), "levenshtein": lev,
                     "ngram_cosine": profile.cosine_distance(reference),
                     "ngram_out_of_place": profile.out_of_place(reference)})
    return sorted(rows, key=lambda r: (math.isnan(r["levenshtein"]), r["levenshtein"], r["lang"]))


def format_distance_report(rows: Sequence[Mapping]) -> str:
    """A plain-text table of ``language_distances`` rows."""
    header = ("rank", "lang", "levenshtein", "ngram_cosine", "ngram_out_of_place", "words")
    body = [(str(i), str(r["lang"]), f"{r['levenshtein']:.4f}", f"{r['ngram_cosine']:.4f}",
             f"{r['ngram_out_of_place']:.4f}", str(r["words"])) for i, r in enumerate(rows, 1)]
    widths = [max(len(h), *(len(b[c]) for b in body)) if body else len(h) for c, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if c < 2 else h.rjust(w) for c, (h, w) in enumerate(zip(header, widths)))]
    lines += ["  ".join(v.ljust(w) if c < 2 else v.rjust(w) for c, (v, w) in enumerate(zip(b, widths)))
              for b in body]
    return "\n".join(lines)
