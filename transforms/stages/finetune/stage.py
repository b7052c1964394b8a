"""Fine-tuning datasets: tokenizer, NER label alignment, packing, language mixing.

First the pure core: every function takes texts, token ids or counts and returns
plain columns. Then the stage's DoFns (``PackSequencesFn``, ``PackTailsFn``,
``AlignNerFn``), thin around it, which the job in ``pipelines/finetune.py`` composes
and the benchmark calls exactly as a worker does. SentencePiece is called once per batch
(``sp.encode(list_of_str)``), never once per row, for the same reason the other
stages batch their model calls.

Choices made here, in one place:
- a *word* is a whitespace-separated token (``str.split()``); fertility is pieces
  per such word, which is what matters to a model that sees the text;
- NER windows break at word boundaries, so a word's pieces stay together unless
  one word alone is longer than a window; each word is labelled in exactly one
  window (see ``align_ner``);
- packing never mixes languages or splits and pads only the last sequence of
  each (``StreamPacker`` per worker, then the workers' leftovers packed together);
- which rows a language contributes is decided by a seeded hash of the row id, so
  any worker can decide for its own rows and the choice does not depend on order.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from collections import Counter
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils import shared
from apache_beam.utils.windowed_value import WindowedValue

from xlcorpus.transforms.core.batch_fn import REJECTED, BatchStageFn, rejected_rows
from xlcorpus.transforms.backends.model_cache import local_copy

IGNORE_INDEX = -100  # the label PyTorch's cross-entropy skips


# --- tokenizer ---------------------------------------------------------------------

def _reservoir(texts: Iterable[str], k: int, seed: int) -> list[str]:
    """At most ``k`` non-empty lines, a uniform sample when there are more, kept in input order.

    Sampling here (rather than SentencePiece's own ``input_sentence_size``) makes the
    sample depend only on ``seed`` and lets the corpus be a stream of any length.
    """
    rng = random.Random(seed)
    kept: list[tuple[int, str]] = []
    n = 0
    for text in texts:
        line = text.strip() if text else ""
        if not line:
            continue
        if n < k:
            kept.append((n, line))
        else:
            j = rng.randrange(n + 1)
            if j < k:
                kept[j] = (n, line)
        n += 1
    kept.sort()
    return [line for _, line in kept]


def train_tokenizer(texts: Iterable[str], out_prefix: str, vocab_size: int = 8000, model_type: str = "unigram",
                    character_coverage: float = 0.9995, sample_lines: int = 1_000_000, seed: int = 0,
                    hard_vocab_limit: bool = True, **extra) -> str:
    """Train a SentencePiece model on ``texts``; returns the ``.model`` path.

    Deterministic for the same texts and arguments: lines are reservoir-sampled
    with a seeded RNG, SentencePiece's own sampling and shuffling are off, and it
    trains on one thread. ``extra`` passes further trainer options through (e.g.
    ``user_defined_symbols``). Too large a ``vocab_size`` for the corpus raises
    ValueError, unless ``hard_vocab_limit=False`` lets SentencePiece stop short.
    """
    import sentencepiece as spm

    if sample_lines <= 0:
        raise ValueError(f"sample_lines must be positive, got {sample_lines}")
    lines = _reservoir(texts, sample_lines, seed)
    if not lines:
        raise ValueError("train_tokenizer got no non-empty lines")
    Path(out_prefix).parent.mkdir(parents=True, exist_ok=True)
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_prefix=out_prefix, vocab_size=vocab_size, model_type=model_type,
            character_coverage=character_coverage, num_threads=1, input_sentence_size=0,
            shuffle_input_sentence=False, hard_vocab_limit=hard_vocab_limit, minloglevel=2, **extra)
    except RuntimeError as e:
        if "smaller than required_chars" in str(e):
            raise ValueError(f"vocab_size={vocab_size} is too small for the corpus' characters: {e}") from e
        if "Vocabulary size" in str(e) or "vocab_size" in str(e):
            raise ValueError(f"vocab_size={vocab_size} is too large for this corpus ({len(lines)} lines): {e}; "
                             f"use a smaller vocab_size or hard_vocab_limit=False") from e
        raise
    return out_prefix + ".model"


def fertility_report(texts: Sequence[str], langs: Sequence[str], sp) -> dict[str, dict[str, float]]:
    """Per language: words, pieces, fertility (pieces per word) and unk_rate (unk pieces per piece).

    Words are whitespace-separated tokens (``str.split()``). High fertility or unk
    rate means the tokenizer barely saw the language: sequences get long and the
    model sees fragments, so this is the number to check before fine-tuning.
    """
    if len(texts) != len(langs):
        raise ValueError(f"{len(texts)} texts but {len(langs)} langs")
    texts = list(texts)
    encoded = sp.encode(texts)
    unk = sp.unk_id()
    acc: dict[str, list[int]] = {}
    for text, lang, ids in zip(texts, langs, encoded):
        a = acc.setdefault(lang, [0, 0, 0])
        a[0] += len(text.split())
        a[1] += len(ids)
        a[2] += ids.count(unk)
    return {lang: {"words": w, "pieces": p, "fertility": p / w if w else 0.0, "unk_rate": u / p if p else 0.0}
            for lang, (w, p, u) in sorted(acc.items())}


# --- NER alignment -------------------------------------------------------------------

def _windows(word_starts: list[int], total: int, cap: int, stride: int) -> list[tuple[int, int]]:
    """Piece ranges ``[start, end)`` of at most ``cap`` pieces covering ``[0, total)``.

    A window ends at the last word start it can reach, so words stay whole; the next
    window starts at the first word start at most ``stride`` pieces before that end
    (less overlap when words do not line up, none when a long word leaves no room).
    Only a word longer than ``cap`` is cut inside.
    """
    out: list[tuple[int, int]] = []
    ps, prev_pe = 0, 0
    while True:
        if total - ps <= cap:
            out.append((ps, total))
            return out
        limit = ps + cap
        pe = word_starts[bisect_right(word_starts, limit) - 1]
        if pe <= max(ps, prev_pe):  # no new word boundary within reach
            if ps < prev_pe:  # give up the overlap and try again from the last end
                ps = prev_pe
                continue
            pe = limit  # one word longer than a window: cut inside it
        out.append((ps, pe))
        prev_pe = pe
        k = bisect_left(word_starts, max(pe - stride, ps + 1))
        ps = min(word_starts[k], pe) if k < len(word_starts) else pe


def align_ner(words: Sequence[Sequence[str]], word_labels: Sequence[Sequence[int]], sp, max_length: int,
              stride: int, cls_id: int, sep_id: int, pad_id: int | None = None,
              piece_counts: list[tuple[int, int]] | None = None) -> dict[str, list]:
    """Word-level NER labels -> token windows for a token-classification model.

    Returns columns ``example``, ``window``, ``input_ids``, ``attention_mask``,
    ``labels`` and ``word_ids``, one row per window. ``piece_counts``, if given, gets
    each example's (pieces, unknown pieces) appended, for the fertility report. Each window is
    ``[cls] pieces [sep]`` (padded to ``max_length`` with ``pad_id`` if given).

    Labels: the first piece of a word carries the word's label, every other piece,
    the specials and the padding carry -100. A word that encodes to no pieces gets
    one unk piece so it still has a label.

    Windows: an example longer than ``max_length - 2`` pieces becomes several windows
    (nothing is truncated) that overlap by up to ``stride`` pieces and break at word
    boundaries (``_windows``). Where two windows overlap, the overlap is split at its
    middle piece: words starting before it are labelled in the earlier window, the
    rest in the later one, and elsewhere they are context with -100. So every word
    is labelled exactly once over its example's windows, with context on both sides.
    ``word_ids`` gives each token's word index in its example (-1 for specials/pad).
    """
    cap = max_length - 2
    if cap < 1:
        raise ValueError(f"max_length={max_length} leaves no room beside [cls] and [sep]")
    if not 0 <= stride < cap:
        raise ValueError(f"stride must be in [0, max_length - 2), got {stride} with max_length={max_length}")
    if len(words) != len(word_labels):
        raise ValueError(f"{len(words)} examples of words but {len(word_labels)} of labels")
    flat: list[str] = []
    for i, (ws, ls) in enumerate(zip(words, word_labels)):
        if len(ws) != len(ls):
            raise ValueError(f"example {i}: {len(ws)} words but {len(ls)} labels")
        flat.extend(ws)
    pieces = sp.encode(flat) if flat else []
    unk = sp.unk_id()
    cols: dict[str, list] = {k: [] for k in ("example", "window", "input_ids", "attention_mask", "labels", "word_ids")}
    at = 0
    for ex, (ws, ls) in enumerate(zip(words, word_labels)):
        ids: list[int] = []
        labels: list[int] = []
        wids: list[int] = []
        starts: list[int] = []
        for w, (p, lab) in enumerate(zip(pieces[at:at + len(ws)], ls)):
            if not p:
                p = [unk]
            starts.append(len(ids))
            ids.extend(p)
            labels.append(lab)
            labels.extend([IGNORE_INDEX] * (len(p) - 1))
            wids.extend([w] * len(p))
        at += len(ws)
        if piece_counts is not None:
            piece_counts.append((len(ids), ids.count(unk)))
        spans = _windows(starts, len(ids), cap, stride) if ids else [(0, 0)]
        bounds = [0] + [(spans[k + 1][0] + spans[k][1] + 1) // 2 for k in range(len(spans) - 1)] + [len(ids)]
        for k, (ps, pe) in enumerate(spans):
            lo, hi = bounds[k], bounds[k + 1]
            lab = ([IGNORE_INDEX] * (lo - ps) + labels[lo:hi] + [IGNORE_INDEX] * (pe - hi)) if (lo, hi) != (ps, pe) \
                else labels[ps:pe]
            n = pe - ps + 2
            pad = (max_length - n) if pad_id is not None else 0
            cols["example"].append(ex)
            cols["window"].append(k)
            cols["input_ids"].append([cls_id] + ids[ps:pe] + [sep_id] + [pad_id] * pad)
            cols["attention_mask"].append([1] * n + [0] * pad)
            cols["labels"].append([IGNORE_INDEX] + lab + [IGNORE_INDEX] * (1 + pad))
            cols["word_ids"].append([-1] + wids[ps:pe] + [-1] * (1 + pad))
    return cols


# --- packing ------------------------------------------------------------------------

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


# --- language mixing ----------------------------------------------------------------

def temperature_weights(counts: Mapping[str, int], alpha: float) -> dict[str, float]:
    """Sampling weights p_i ∝ n_i ** alpha: alpha=1 proportional, alpha=0 uniform.

    Small alpha (0.3 is common) up-weights low-resource languages. Languages with
    no rows get weight 0 whatever alpha is: there is nothing to sample.
    """
    if alpha < 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"negative count in {dict(counts)}")
    present = {lang: n for lang, n in counts.items() if n > 0}
    if not present:
        raise ValueError("temperature_weights needs at least one language with rows")
    logs = {lang: alpha * math.log(n) for lang, n in present.items()}
    top = max(logs.values())  # exponentiate relative to the largest: no overflow for large alpha
    raw = {lang: math.exp(v - top) for lang, v in logs.items()}
    z = sum(raw.values())
    return {lang: raw[lang] / z if lang in raw else 0.0 for lang in counts}


def explicit_weights(ratios: Mapping[str, float]) -> dict[str, float]:
    """User-given ratios (any scale) normalised to sum to 1."""
    if any(r < 0 or not math.isfinite(r) for r in ratios.values()):
        raise ValueError(f"ratios must be finite and >= 0, got {dict(ratios)}")
    z = sum(ratios.values())
    if z <= 0:
        raise ValueError("explicit_weights needs at least one positive ratio")
    return {lang: r / z for lang, r in ratios.items()}


def _unit_hash(*parts: object) -> float:
    """A number in [0, 1) from a stable hash of ``parts`` (same on every worker and run)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64


def sample_plan(counts: Mapping[str, int], weights: Mapping[str, float], total: int | None = None,
                seed: int = 0) -> dict[str, int]:
    """Rows to take per language so the mix follows ``weights``; sums to ``total``.

    ``total`` defaults to all rows. A language may get more rows than it has (they
    are repeated by ``select_rows``). Rounding is largest-remainder, ties broken by
    a seeded hash, so the plan is exact and the same for the same seed.
    """
    total = sum(counts.values()) if total is None else total
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    z = sum(weights.get(lang, 0.0) for lang in counts)
    if z <= 0:
        raise ValueError("sample_plan: no language in counts has a positive weight")
    for lang in counts:
        if weights.get(lang, 0.0) > 0 and counts[lang] <= 0:
            raise ValueError(f"language {lang!r} has weight {weights[lang]} but no rows")
    exact = {lang: total * weights.get(lang, 0.0) / z for lang in counts}
    plan = {lang: math.floor(x) for lang, x in exact.items()}
    left = total - sum(plan.values())
    order = sorted((lang for lang in counts if weights.get(lang, 0.0) > 0),
                   key=lambda lang: (-(exact[lang] - plan[lang]), _unit_hash(seed, "plan", lang)))
    for lang in order[:left]:
        plan[lang] += 1
    return plan


def row_key(row_id: str, lang: str, seed: int) -> float:
    """Where a row falls in its language's seeded order, in [0, 1)."""
    return _unit_hash(seed, lang, row_id)


def select_rows(ids: Sequence[str], lang: str, n: int, seed: int = 0) -> np.ndarray:
    """Indices into ``ids`` of the ``n`` rows to take (ascending), repeating rows when n > len(ids).

    Rows are ranked by a seeded hash of their id, so the chosen set does not depend
    on the order of ``ids``, and a worker holding only some rows can decide its own:
    with ``q = n // len`` and ``r = n % len``, a row is taken ``q + 1`` times if its
    key is among the ``r`` smallest, else ``q`` times (``repeat_counts`` does the same
    from a rate without knowing the other rows, at the cost of an inexact total).
    """
    m = len(ids)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if m == 0:
        if n:
            raise ValueError(f"cannot take {n} rows of {lang!r}: it has none")
        return np.zeros(0, np.int64)
    q, r = divmod(n, m)
    copies = np.full(m, q, dtype=np.int64)
    if r:
        keys = np.fromiter((row_key(i, lang, seed) for i in ids), dtype=np.float64, count=m)
        copies[np.argsort(keys, kind="stable")[:r]] += 1
    return np.repeat(np.arange(m, dtype=np.int64), copies)


def repeat_counts(ids: Sequence[str], lang: str, rate: float, seed: int = 0) -> np.ndarray:
    """Copies of each row for a sampling rate (plan[lang] / counts[lang]), decided row by row.

    ``floor(rate)`` copies plus one more when the row's key is below the fractional
    part: no coordination between workers, expected total ``rate * len(ids)``.
    """
    if rate < 0:
        raise ValueError(f"rate must be >= 0, got {rate}")
    base, frac = divmod(rate, 1.0)
    keys = np.fromiter((row_key(i, lang, seed) for i in ids), dtype=np.float64, count=len(ids))
    return (int(base) + (keys < frac)).astype(np.int64)


# --- streaming packing (what each worker runs) ------------------------------------------

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


# --- Beam: the fine-tuning stage ----------------------------------------------------------
# Rows in: id, text, source, line, lang, split (+ tokens, ner_tags for NER). Rows out: one
# per packed sequence (LM) or per window (NER), tensor-ready. Statistics for the report
# (fertility, mix before/after, packing) leave on a STATS output as flat counters
# {"section|lang": n}, summed by ``merge_stats``.
STAGE = "finetune"
STATS, TAILS = "stats", "tails"
NO_TOKENS = "no_tokens"


@dataclass(frozen=True)
class FinetuneOptions:
    task: str  # "lm" (packed causal-LM sequences) or "ner" (token-classification windows)
    tokenizer: str  # SentencePiece .model (local or on shared storage)
    seq_len: int = 512
    max_length: int = 128
    stride: int = 32
    label_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpecialIds:
    """The ids the outputs use, from the SentencePiece model (its own numbering)."""

    bos: int
    eos: int
    pad: int
    unk: int

    @classmethod
    def of(cls, sp) -> SpecialIds:
        bos, eos, pad, unk = sp.bos_id(), sp.eos_id(), sp.pad_id(), sp.unk_id()
        if eos < 0:
            raise ValueError("the SentencePiece model has no </s> (eos) piece: it separates documents and ends "
                             "NER windows; train one with eos_id >= 0")
        if bos < 0:
            bos = eos
        # No pad piece: pad with </s>; attention_mask and labels (-100) say which is padding.
        return cls(bos, eos, pad if pad >= 0 else eos, unk)


def merge_stats(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for p in parts:
        total.update(p)
    return dict(total)


def stats_section(stats: Mapping[str, int], section: str) -> dict[str, int]:
    prefix = section + "|"
    return {k[len(prefix):]: v for k, v in sorted(stats.items()) if k.startswith(prefix)}


def _codes(column: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a string column (nulls as "und") and the values they stand for."""
    enc = pc.fill_null(column, "und").dictionary_encode()
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist()


def word_counts(texts: Sequence[str | None]) -> np.ndarray:
    """``len(text.split())`` per row (0 for None). Plain str.split on purpose: Arrow's
    utf8_split_whitespace counts empty pieces at the ends, and a numpy count over the
    UTF-8 buffer measured slower on mixed-script batches."""
    return np.fromiter((len(t.split()) if t else 0 for t in texts), dtype=np.int64, count=len(texts))


def fertility_from_stats(stats: Mapping[str, int]) -> dict[str, dict[str, float]]:
    words, pieces, unk = (stats_section(stats, s) for s in ("words", "pieces", "unk"))
    return {lang: {"words": w, "pieces": pieces.get(lang, 0),
                   "fertility": pieces.get(lang, 0) / w if w else 0.0,
                   "unk_rate": unk.get(lang, 0) / pieces[lang] if pieces.get(lang) else 0.0}
            for lang, w in sorted(words.items())}


_SP = shared.Shared()


class _SpHolder:
    def __init__(self, path: str):
        import sentencepiece as spm

        self.sp = spm.SentencePieceProcessor(model_file=local_copy(path))


def _load_sp(path: str):
    return _SP.acquire(lambda: _SpHolder(path), tag=path).sp


def _emit(value, tag: str | None = None):
    """A value from finish_bundle (which must say its window), optionally tagged."""
    wv = WindowedValue(value, GlobalWindow().max_timestamp(), [GlobalWindow()])
    return beam.pvalue.TaggedOutput(tag, wv) if tag else wv


def _lm_rows(ids: np.ndarray, mask: np.ndarray, split: str, lang: str, source: str, first: int,
             id_prefix: str) -> pa.RecordBatch:
    n, seq_len = ids.shape
    lines = np.arange(first, first + n, dtype=np.int64)

    def fixed(a: np.ndarray) -> pa.Array:
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1).astype(np.int32)), seq_len)

    return pa.RecordBatch.from_arrays(
        [pa.array([f"{id_prefix}/{k}" for k in lines.tolist()], pa.string()), pa.array([source] * n, pa.string()),
         pa.array(lines), pa.array([lang] * n, pa.string()), pa.array([split] * n, pa.string()),
         fixed(ids), fixed(mask), fixed(causal_lm_labels(ids, mask))],
        names=["id", "source", "line", "lang", "split", "input_ids", "attention_mask", "labels"])


class PackSequencesFn(beam.DoFn):
    """Documents -> full packed sequences per (split, language); the bundle's leftovers
    go to TAILS, its statistics to STATS; documents with no pieces are rejected."""

    def __init__(self, opts: FinetuneOptions):
        self.opts = opts
        self.docs = Metrics.counter(f"xlcorpus.{STAGE}", "documents")
        self.seqs = Metrics.counter(f"xlcorpus.{STAGE}", "sequences")

    def setup(self):
        self.sp = _load_sp(self.opts.tokenizer)
        self.special = SpecialIds.of(self.sp)

    def start_bundle(self):
        self.packers: dict[tuple[str, str], StreamPacker] = {}
        self.made: Counter = Counter()  # sequences made per (split, lang, source) in this bundle
        self.stats: Counter = Counter()

    def process(self, batch: pa.RecordBatch):
        n = batch.num_rows
        texts = batch.column("text").to_pylist()
        encoded = self.sp.encode(texts)
        self.docs.inc(n)
        # Everything after encode is vectorised over the batch's ids: one flat array,
        # grouped by (split, language) with a stable sort of token positions.
        lens = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
        flat = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32, count=int(lens.sum()))
        token_row = np.repeat(np.arange(n), lens)
        lang_codes, langs = _codes(batch.column("lang"))
        split_codes, splits = _codes(batch.column("split"))
        words = word_counts(texts)
        unk = np.bincount(token_row[flat == self.special.unk], minlength=n)
        for name, per_row in (("words", words), ("pieces", lens), ("unk", unk), ("documents", lens > 0)):
            sums = np.bincount(lang_codes, weights=per_row, minlength=len(langs))
            self.stats.update({f"{name}|{lang}": int(v) for lang, v in zip(langs, sums) if v})
        empty = np.flatnonzero(lens == 0)
        if len(empty):
            yield beam.pvalue.TaggedOutput(REJECTED, rejected_rows(
                batch, empty, [NO_TOKENS] * len(empty), [None] * len(empty), STAGE))
        source = batch.column("source")[0].as_py() if n else ""
        group = split_codes * len(langs) + lang_codes
        token_group = group[token_row]
        order = np.argsort(token_group, kind="stable")
        flat, token_group = flat[order], token_group[order]
        starts = np.searchsorted(token_group, np.arange(len(splits) * len(langs) + 1))
        for g in np.unique(group[lens > 0]).tolist():
            split, lang = splits[g // len(langs)], langs[g % len(langs)]
            packer = self.packers.get((split, lang))
            if packer is None:
                packer = self.packers[(split, lang)] = StreamPacker(self.opts.seq_len, self.special.eos)
            full = packer.add_flat(flat[starts[g]:starts[g + 1]], lens[(group == g) & (lens > 0)])
            if len(full):
                yield self._rows(full, np.ones_like(full), split, lang, source)

    def _rows(self, ids, mask, split, lang, source) -> pa.RecordBatch:
        first = self.made[(split, lang, source)]
        self.made[(split, lang, source)] += len(ids)
        self.seqs.inc(len(ids))
        self.stats[f"sequences|{lang}"] += len(ids)
        self.stats[f"tokens|{lang}"] += int(mask.sum())
        return _lm_rows(ids, mask, split, lang, source, first, f"{split}/{lang}/{_short_hash(source)}")

    def finish_bundle(self):
        for key in sorted(self.packers):
            tail = self.packers[key].tail()
            if len(tail):
                yield _emit((key, tail), TAILS)
        yield _emit(dict(self.stats), STATS)


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()


class PackTailsFn(beam.DoFn):
    """All bundles' leftovers of one (split, language) -> its last sequences (one padded)."""

    def __init__(self, opts: FinetuneOptions, sep: int, pad: int):
        self.opts, self.sep, self.pad = opts, sep, pad

    def process(self, item):
        (split, lang), tails = item
        # order by content so the result does not depend on which bundle finished first
        tails = sorted((t.tolist() for t in tails), key=lambda t: (len(t), t))
        packed = pack(tails, self.opts.seq_len, self.sep, self.pad)
        if len(packed):
            source = f"packed-tails/{split}/{lang}"
            yield _lm_rows(packed.input_ids, packed.attention_mask, split, lang, source, 0,
                           f"{split}/{lang}/tails")
            yield beam.pvalue.TaggedOutput(STATS, {f"sequences|{lang}": len(packed),
                                                   f"tokens|{lang}": int(packed.attention_mask.sum())})


class AlignNerFn(BatchStageFn):
    """Examples with word ``tokens`` and ``ner_tags`` -> padded token-classification windows."""

    stage = STAGE
    dead_reason = "invalid_ner_example"

    def __init__(self, opts: FinetuneOptions):
        super().__init__()
        self.opts = opts

    def setup(self):
        self.sp = _load_sp(self.opts.tokenizer)
        self.special = SpecialIds.of(self.sp)

    def start_bundle(self):
        self.stats: Counter = Counter()

    def finish_bundle(self):
        yield _emit(dict(self.stats), STATS)

    def step(self, batch: pa.RecordBatch):
        words = batch.column("tokens").to_pylist()
        tags = batch.column("ner_tags").to_pylist()
        n_labels = len(self.opts.label_names)
        for i, (ws, ts) in enumerate(zip(words, tags)):
            if ws is None or ts is None:
                raise ValueError(f"row {batch.column('id')[i].as_py()!r}: field 'tokens' or 'ner_tags' is null")
            bad = [t for t in ts if t is None or not 0 <= t < n_labels]
            if bad:
                raise ValueError(f"row {batch.column('id')[i].as_py()!r}: field 'ner_tags' holds {bad[0]!r}, "
                                 f"not a label index in [0, {n_labels})")
        s = self.special
        counts: list[tuple[int, int]] = []
        cols = align_ner(words, tags, self.sp, self.opts.max_length, self.opts.stride, s.bos, s.eos, s.pad, counts)
        take = pa.array(np.asarray(cols["example"], dtype=np.int64))
        base = batch.select(["id", "source", "line", "lang", "split", "tokens", "ner_tags"]).take(take)
        ids = [f"{i}#{w}" for i, w in zip(base.column("id").to_pylist(), cols["window"])]
        L = self.opts.max_length

        def fixed(name: str) -> pa.Array:
            return pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(cols[name], np.int32).reshape(-1)), L)

        out = pa.RecordBatch.from_arrays(
            [pa.array(ids, pa.string()), base.column("source"), base.column("line"), base.column("lang"),
             base.column("split"), base.column("tokens"), base.column("ner_tags"),
             pa.array(cols["window"], pa.int32()), fixed("input_ids"), fixed("attention_mask"), fixed("labels"),
             fixed("word_ids")],
            names=["id", "source", "line", "lang", "split", "tokens", "ner_tags", "window", "input_ids",
                   "attention_mask", "labels", "word_ids"])
        langs = pc.fill_null(batch.column("lang"), "und").to_pylist()
        stats: Counter = Counter()
        for lang, ws, (n, u) in zip(langs, words, counts):
            stats.update({f"words|{lang}": len(ws), f"pieces|{lang}": n, f"unk|{lang}": u, f"documents|{lang}": 1})
        for e in cols["example"]:
            stats[f"sequences|{langs[e]}"] += 1
        self.stats.update(stats)  # last: a step that raised counts nothing
        return out, None
