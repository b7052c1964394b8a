"""Exact nearest-word search: normalised Levenshtein distance from query words to their
nearest lexicon word (``NearestWordIndex``), and the brute-force reference.

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
import math
from collections.abc import Iterable, Sequence
from itertools import combinations, repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

# Words longer than this stay out of the deletion index (C(n, k) variants each); their
# buckets and queries fall back to the plain bound in the bucket scan.
_MAX_INDEXED_LENGTH = 32
# The deletion index's default depth (every caller's default: the stage's options, Lexicon.index,
# SentenceScorer): 3 runs 1.1-1.25x the exact search speed of 2 on bench/lexfilter.py's open
# vocabulary, for ~2.7-2.9x the entries (8 bytes each: 44 MB for a 50k-word lexicon).
DEFAULT_MAX_DELETES = 3
_VARIANTS_PER_CHUNK = 1 << 22

# Polynomial hash (mod 2**64) of a string's code points; a deletion variant's hash is
# computed from the code-point matrix of all words of one length at once, no string built.
# Equal strings hash equally; the rare collision only adds a candidate that rapidfuzz rejects.
_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)
# Deletion-index entries and lookup keys are one uint64 each: the low 40 bits of a
# variant's hash above a 24-bit number (the lexicon word's, or the query's), so both
# sides are built with a plain sort (several times faster than an argsort) and an
# entry costs 8 bytes. The low bits: a short string's hash has zero top bits. A shorter
# hash collides more often, which only adds candidates that the check rejects.
_ID_BITS = np.uint64(24)
_MAX_IDS = 1 << 24
_ID_MASK = np.uint64(_MAX_IDS - 1)
_KEPT_HASH = np.uint64((1 << 40) - 1)


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

    def __init__(self, words: Iterable[str], *, max_deletes: int = DEFAULT_MAX_DELETES, memo_size: int = 0,
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
        if self.max_deletes and len(unique) > _MAX_IDS:
            raise ValueError(f"the deletion index holds at most {_MAX_IDS} words, got {len(unique)} "
                             "(use max_deletes=0)")
        self._del_entries = self._build_deletion_index() if self.max_deletes else np.zeros(0, np.uint64)
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

    def _build_deletion_index(self) -> np.ndarray:
        """Sorted entries (variant hash << 24 | word id) of every word's variants."""
        short = np.flatnonzero(self._lengths <= _MAX_INDEXED_LENGTH)
        # Chunks of at most _VARIANTS_PER_CHUNK variants (a word of n letters has
        # sum C(n, d) for d <= max_deletes: 5,489 at n = 32, d <= 3), so the hash
        # matrices stay ~32 MB whatever the lexicon's word lengths.
        counts = np.array([sum(math.comb(n, d) for d in range(self.max_deletes + 1)) for n in range(
            _MAX_INDEXED_LENGTH + 1)], np.int64)[self._lengths[short]]
        ends = np.cumsum(counts)
        entries = []
        start = 0
        while start < short.size:
            before = int(ends[start] - counts[start])
            stop = max(start + 1, int(np.searchsorted(ends, before + _VARIANTS_PER_CHUNK, side="right")))
            part = short[start:stop]
            start = stop
            h, i = _variant_hashes([self.words[j] for j in part.tolist()], part, range(self.max_deletes + 1))
            entries.append(((h & _KEPT_HASH) << _ID_BITS) | i.astype(np.uint64))
        return np.sort(np.concatenate(entries)) if entries else np.zeros(0, np.uint64)

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
        if q > _MAX_IDS:  # query numbers must fit the lookup keys
            return np.concatenate([self._search(queries[s:s + _MAX_IDS],
                                                None if array is None else array.slice(s, _MAX_IDS))
                                   for s in range(0, q, _MAX_IDS)])
        best = np.ones(q, np.float64)  # every distance is <= 1, so 1 is a valid start
        if q == 0:
            return best.astype(np.float32)
        qlen = (pc.utf8_length(array).to_numpy(zero_copy_only=False).astype(np.int64) if array is not None
                else np.fromiter(map(len, queries), np.int64, q))
        exact = np.fromiter(map(self._word_set.__contains__, queries), bool, q)
        best[exact] = 0.0
        rest = np.flatnonzero(~exact & (qlen > 0))
        indexed = rest[qlen[rest] <= _MAX_INDEXED_LENGTH]
        if indexed.size and self._del_entries.size:
            self._deletion_candidates(queries, qlen, indexed, best)
        self._scan_buckets(queries, qlen, rest, best)
        if self.max_distance is not None:
            best[best > self.max_distance] = 1.0  # nothing within the cap (as rapidfuzz's score_cutoff)
        return best.astype(np.float32)

    def _deletion_candidates(self, queries, qlen, rest, best) -> None:
        """Step 2: exact distances to every lexicon word within max_deletes edits.

        One-deletion variants go first, then each deeper level d on its own, only for the
        queries that still need it: a word >= d edits away is at normalised distance
        >= d / (n + d), so a query whose best is already there cannot gain from it."""
        k = self.max_deletes
        self._lookup(queries, qlen, *_variant_hashes([queries[i] for i in rest.tolist()], rest, range(min(k, 1) + 1)),
                     best)
        for depth in range(2, k + 1):
            deeper = rest[best[rest] * (qlen[rest] + depth) > depth]
            if deeper.size:
                self._lookup(queries, qlen, *_variant_hashes([queries[i] for i in deeper.tolist()], deeper, [depth]),
                             best)

    def _lookup(self, queries, qlen, qh, owner, best) -> None:
        """Verify the lexicon words sharing a deletion variant (hash ``qh``) with query ``owner``."""
        # sorted needles: searchsorted walks the table in order
        keys = np.sort(((qh & _KEPT_HASH) << _ID_BITS) | owner.astype(np.uint64))
        variant = keys & ~_ID_MASK
        lo = np.searchsorted(self._del_entries, variant, "left")
        hits = np.searchsorted(self._del_entries, variant | _ID_MASK, "right") - lo
        found = hits > 0
        lo, hits, owner = lo[found], hits[found], (keys[found] & _ID_MASK).astype(np.int64)
        total = int(hits.sum())
        if total == 0:
            return
        starts = np.repeat(lo - (np.cumsum(hits) - hits), hits)
        pair_w = (self._del_entries[starts + np.arange(total)] & _ID_MASK).astype(np.int64)
        key = np.sort(np.repeat(owner, hits) * len(self.words) + pair_w)
        key = key[np.r_[True, key[1:] != key[:-1]]]  # each (query, word) pair once
        pair_q, pair_w = key // len(self.words), key % len(self.words)
        # Words sharing a variant are <= 2k edits apart (k with max_edits: nothing farther
        # counts); rapidfuzz reports cutoff + 1 for farther pairs (hash collisions), dropped.
        cutoff = self.max_deletes if self.max_edits is not None else 2 * self.max_deletes
        d = _pair_distances(queries, pair_q, self._objects[pair_w].tolist(), cutoff)
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


# A query with at least this many candidates gets its own ``cdist`` call (~60 ns a pair);
# ``cpdist`` prepares each pair's query again (~150-400 ns a pair), cheaper only for few.
_GROUPED_CANDIDATES = 24


def _pair_distances(queries: list[str], pair_q: np.ndarray, words: list[str], cutoff: int) -> np.ndarray:
    """Levenshtein distances of (queries[pair_q[i]], words[i]) (at most cutoff + 1);
    ``pair_q`` sorted, so each query's pairs are one run."""
    d = np.empty(pair_q.size, np.int32)
    starts = np.flatnonzero(np.r_[True, pair_q[1:] != pair_q[:-1]])
    sizes = np.diff(np.r_[starts, pair_q.size])
    grouped = sizes >= _GROUPED_CANDIDATES
    for start, size in zip(starts[grouped].tolist(), sizes[grouped].tolist()):
        d[start:start + size] = process.cdist([queries[pair_q[start]]], words[start:start + size],
                                              scorer=Levenshtein.distance, score_cutoff=cutoff, dtype=np.int32,
                                              workers=1)[0]
    single = np.flatnonzero(np.repeat(~grouped, sizes))
    if single.size:
        d[single] = process.cpdist([queries[i] for i in pair_q[single].tolist()], [words[i] for i in single.tolist()],
                                   scorer=Levenshtein.distance, score_cutoff=cutoff, dtype=np.int32, workers=1)
    return d


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
