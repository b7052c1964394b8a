"""The target lexicon: a word-frequency table built from a reference corpus, stored as
Parquet with its normalisation options in the schema metadata."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from xlcorpus.transforms.stages.lexfilter.index import DEFAULT_MAX_DELETES, NearestWordIndex
from xlcorpus.transforms.stages.lexfilter.profile import NgramProfile, word_ngrams
from xlcorpus.transforms.stages.lexfilter.tokens import WORD, normalize_text, tokenize

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
            counts.update(WORD.findall(normalize_text("\n".join(chunk), options.lowercase,
                                                       options.fold_diacritics)))
            chunk.clear()
    if chunk:
        counts.update(WORD.findall(normalize_text("\n".join(chunk), options.lowercase, options.fold_diacritics)))
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

    def index(self, max_deletes: int = DEFAULT_MAX_DELETES, memo_size: int = 0, max_distance: float | None = None,
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

