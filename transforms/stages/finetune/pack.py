"""Causal-LM packing: token ids -> fixed-length sequences, and their rows.

Packing never mixes languages and splits, and pads only the last sequence of each:
a worker packs its stream as it comes (``BundlePacker``: one ``StreamPacker`` per
split and language), then every worker's leftovers are packed together
(``pack_tails``), so a corpus spread over many workers wastes no more than packing
it in one place.
"""

from __future__ import annotations

import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from xlcorpus.transforms.stages.finetune.common import IGNORE_INDEX

@dataclass(frozen=True)
class Packed:
    """Packed sequences: ``input_ids`` and ``attention_mask`` as ``(n, seq_len)`` int32 arrays."""

    input_ids: np.ndarray
    attention_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.input_ids)

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        for ids, mask in zip(self.input_ids, self.attention_mask):
            yield ids.tolist(), mask.tolist()

    def to_batch(self) -> pa.RecordBatch:
        """As an Arrow batch of fixed-size list columns (what the dataset sink writes)."""
        seq_len = self.input_ids.shape[1]
        return pa.RecordBatch.from_arrays(
            [pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), seq_len)
             for a in (self.input_ids, self.attention_mask)], names=["input_ids", "attention_mask"])


def pack(docs_token_ids: Iterable[Sequence[int]], seq_len: int, sep_id: int, pad_id: int) -> Packed:
    """Greedy packing: documents joined by ``sep_id`` into one stream, cut every ``seq_len`` tokens.

    Every token of every document appears once, in order; a long document runs on
    into the next sequence; a sequence may start mid-document or with a separator.
    Empty documents are skipped (no doubled separators). Only the last sequence is
    padded, so efficiency is ``1 - pad / (n * seq_len)`` with pad < seq_len.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    docs = docs_token_ids if isinstance(docs_token_ids, Sequence) else list(docs_token_ids)
    # one flat array (fromiter with a count is the fast way out of Python lists), then
    # the separators go in at every document end but the last, in one vectorised insert
    lens = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
    flat = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32, count=int(lens.sum()))
    ends = np.cumsum(lens[lens > 0])[:-1]
    stream = np.insert(flat, ends, sep_id) if len(ends) else flat
    n = -(-len(stream) // seq_len)
    ids = np.full(n * seq_len, pad_id, dtype=np.int32)
    ids[:len(stream)] = stream
    mask = np.zeros(n * seq_len, dtype=np.int32)
    mask[:len(stream)] = 1
    return Packed(ids.reshape(n, seq_len), mask.reshape(n, seq_len))


def packing_efficiency(seqs: Packed | Iterable[tuple[Sequence[int], Sequence[int]]]) -> float:
    """Non-pad tokens / all tokens (1.0 for no sequences)."""
    if isinstance(seqs, Packed):
        total, real = seqs.attention_mask.size, int(seqs.attention_mask.sum())
    else:
        total = real = 0
        for _, mask in seqs:
            total += len(mask)
            real += sum(mask)
    return real / total if total else 1.0


def pack_by_language(ids_by_lang: Mapping[str, Iterable[Sequence[int]]], seq_len: int, sep_id: int,
                     pad_id: int) -> dict[str, Packed]:
    """``pack`` per language (sorted), so no sequence mixes two languages."""
    return {lang: pack(ids_by_lang[lang], seq_len, sep_id, pad_id) for lang in sorted(ids_by_lang)}


class StreamPacker:
    """``pack`` for a stream that arrives in batches: full sequences leave as soon as they fill.

    What is left when the stream ends (``tail``) is shorter than ``seq_len`` and ends at a
    document end. Packing every worker's tails together with ``pack`` then pads at most
    one sequence per key, so packing a corpus spread over many workers wastes no more
    than packing it in one place.
    """

    def __init__(self, seq_len: int, sep_id: int):
        if seq_len < 1:
            raise ValueError(f"seq_len must be positive, got {seq_len}")
        self.seq_len, self.sep_id = seq_len, sep_id
        self._rest = np.zeros(0, np.int32)
        self._started = False

    def add(self, docs: Sequence[Sequence[int]]) -> np.ndarray:
        """Append documents; returns the sequences completed, shape ``(k, seq_len)``."""
        lens = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        flat = np.fromiter(itertools.chain.from_iterable(docs), dtype=np.int32, count=int(lens.sum()))
        return self.add_flat(flat, lens)

    def add_flat(self, flat: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """``add`` for documents given as one concatenated id array and their lengths."""
        nonempty = lens[lens > 0]
        if not len(nonempty):
            return np.zeros((0, self.seq_len), np.int32)
        # a separator between documents, and one after what an earlier batch left over
        ends = np.cumsum(nonempty)[:-1]
        stream = np.insert(flat, ends, self.sep_id) if len(ends) else flat
        if self._started:
            stream = np.concatenate([self._rest, [self.sep_id], stream]).astype(np.int32, copy=False)
        self._started = True
        full = len(stream) // self.seq_len * self.seq_len
        self._rest = stream[full:]
        return stream[:full].reshape(-1, self.seq_len)

    def tail(self) -> np.ndarray:
        return self._rest


def causal_lm_labels(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Labels for causal-LM training: the ids themselves, IGNORE_INDEX on padding."""
    return np.where(attention_mask.astype(bool), input_ids, IGNORE_INDEX).astype(np.int32)


def lm_rows(ids: np.ndarray, mask: np.ndarray | None, split: str, lang: str, source: str, first: int,
            id_prefix: str) -> pa.RecordBatch:
    """The output rows of packed sequences: ids ``{id_prefix}/{line}`` numbered from ``first``.
    ``mask`` None: every token is real (full sequences), so the labels are the ids."""
    n, seq_len = ids.shape
    lines = np.arange(first, first + n, dtype=np.int64)

    def fixed(a: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1).astype(np.int32, copy=False)), seq_len)

    labels = ids if mask is None else causal_lm_labels(ids, mask)
    return pa.RecordBatch.from_arrays(
        [pa.array([f"{id_prefix}/{k}" for k in lines.tolist()], pa.string()), pa.array([source] * n, pa.string()),
         pa.array(lines), pa.array([lang] * n, pa.string()), pa.array([split] * n, pa.string()),
         fixed(ids), fixed(np.ones_like(ids) if mask is None else mask), fixed(labels)],
        names=["id", "source", "line", "lang", "split", "input_ids", "attention_mask", "labels"])


def short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


class BundlePacker:
    """One bundle's packing: a ``StreamPacker`` per (split, language), the sequences made
    per (split, language, source), which number the rows' ids, and the ``sequences|`` and
    ``tokens|`` report counters."""

    def __init__(self, seq_len: int, sep_id: int):
        self.seq_len, self.sep_id = seq_len, sep_id
        self.packers: dict[tuple[str, str], StreamPacker] = {}
        self.made: Counter = Counter()
        self.stats: Counter = Counter()

    def add(self, split: str, lang: str, source: str, flat: np.ndarray, lens: np.ndarray) -> pa.RecordBatch | None:
        """Documents of one split and language (concatenated ids and their lengths) ->
        rows of the sequences they complete, or None."""
        packer = self.packers.get((split, lang))
        if packer is None:
            packer = self.packers[(split, lang)] = StreamPacker(self.seq_len, self.sep_id)
        full = packer.add_flat(flat, lens)
        if not len(full):
            return None
        first = self.made[(split, lang, source)]
        self.made[(split, lang, source)] += len(full)
        self.stats[f"sequences|{lang}"] += len(full)
        self.stats[f"tokens|{lang}"] += int(full.size)  # full sequences: every token is real
        return lm_rows(full, None, split, lang, source, first, f"{split}/{lang}/{short_hash(source)}")

    def tails(self) -> list[tuple[tuple[str, str], np.ndarray]]:
        """What is left per (split, language), in key order: shorter than a sequence."""
        return [(key, tail) for key in sorted(self.packers) if len(tail := self.packers[key].tail())]


def pack_tails(tails: Iterable[np.ndarray], seq_len: int, sep_id: int, pad_id: int) -> Packed:
    """All bundles' leftovers of one (split, language) -> its last sequences (one padded)."""
    # order by content so the result does not depend on which bundle finished first
    ordered = sorted((t.tolist() for t in tails), key=lambda t: (len(t), t))
    return pack(ordered, seq_len, sep_id, pad_id)
