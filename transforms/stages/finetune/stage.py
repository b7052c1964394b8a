"""The fine-tuning stages: ``PackSequences`` (packed causal-LM sequences) and ``AlignNer``
(padded token-classification windows), both named ``finetune``.

Rows in: id, text, source, line, lang, split (+ tokens, ner_tags for NER). Rows out: one
per packed sequence (LM) or per window (NER), tensor-ready. A stage's ``stats`` are the
run report's counters ``{"section|lang": n}`` (fertility, packing), which its
``transform()`` sends to a STATS output rather than to Beam metrics. No Beam here: the
Beam parts are in ``passes.py``; the job in ``pipelines/finetune.py`` composes them.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xlcorpus.transforms.core.accounting import rejected_rows
from xlcorpus.transforms.core.stage import Stage, StageResult
from xlcorpus.transforms.stages.finetune.common import STAGE
from xlcorpus.transforms.stages.finetune.ner import align_ner
from xlcorpus.transforms.stages.finetune.options import FinetuneOptions
from xlcorpus.transforms.stages.finetune.pack import BundlePacker, lm_rows, pack_tails
from xlcorpus.transforms.stages.finetune.tokenizer import SpecialIds, load_tokenizer, word_counts

NO_TOKENS = "no_tokens"  # reject reason: a document SentencePiece turns into no pieces


def _codes(column: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Integer codes of a string column (nulls as "und") and the values they stand for."""
    enc = pc.fill_null(column, "und").dictionary_encode()
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist()


class _Tokenized(Stage[FinetuneOptions]):
    """A stage over SentencePiece ids; ``tokenizer`` is the model's path, which the job
    resolves (trained on the input or copied) before it builds the pipeline."""

    name = STAGE
    Options = FinetuneOptions

    def __init__(self, options: FinetuneOptions | None = None, tokenizer: str | None = None):
        super().__init__(options)
        self.tokenizer = tokenizer
        self.sp = None

    def check(self) -> None:
        if not self.tokenizer:
            raise ValueError(f"{type(self).__name__}: no tokenizer model")
        if "://" not in self.tokenizer and not os.path.exists(self.tokenizer):
            raise FileNotFoundError(f"tokenizer: {self.tokenizer} does not exist")

    def setup(self) -> None:
        self.sp = load_tokenizer(self.tokenizer)
        self.special = SpecialIds.of(self.sp)


class PackSequences(_Tokenized):
    """Documents -> full packed sequences per (split, language); documents with no
    pieces are rejected (``no_tokens``).

    In a pipeline each bundle packs its stream (``pack_batch`` into one ``BundlePacker``)
    and the bundles' leftovers are packed together per key (``pack_tails``); ``process``
    packs one batch on its own, tails included.
    """

    encoder: ThreadPoolExecutor | None = None  # the thread SentencePiece encodes in (from setup)

    def setup(self) -> None:
        super().setup()
        self.encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sentencepiece")

    def teardown(self) -> None:
        if self.encoder is not None:
            self.encoder.shutdown()
            self.encoder = None

    def bundle(self) -> BundlePacker:
        return BundlePacker(self.options.seq_len, self.special.eos)

    def pack_batch(self, batch: pa.RecordBatch, packer: BundlePacker
                   ) -> tuple[list[pa.RecordBatch], pa.RecordBatch | None]:
        """(rows of the sequences ``batch`` completes in ``packer``, rejected rows or None);
        its ``words|``, ``pieces|``, ``unk|`` and ``documents|`` counters go to ``packer.stats``."""
        n = batch.num_rows
        lang_codes, langs = _codes(batch.column("lang"))
        split_codes, splits = _codes(batch.column("split"))
        # Rows go to SentencePiece ordered by (split, language), so each group's ids come
        # out contiguous: no sort of token positions, one slice per group. Everything
        # below is in that order; ``order`` maps back to the batch's rows.
        group = split_codes * len(langs) + lang_codes
        order = np.argsort(group, kind="stable")
        group, lang_codes = group[order], lang_codes[order]
        texts = batch.column("text").take(pa.array(order)).to_pylist()
        # SentencePiece releases the GIL while it encodes: the words are counted meanwhile
        encoding = self.encoder.submit(self.sp.encode, texts, out_type="numpy")  # int32 ids, no Python ints
        words = word_counts(texts)
        encoded = encoding.result()
        lens = np.fromiter(map(len, encoded), dtype=np.int64, count=n)
        flat = np.concatenate(encoded) if n else np.zeros(0, np.int32)
        bounds = np.zeros(n + 1, np.int64)  # row i's ids: flat[bounds[i]:bounds[i + 1]]
        np.cumsum(lens, out=bounds[1:])
        unk = np.bincount(np.searchsorted(bounds, np.flatnonzero(flat == self.special.unk), side="right") - 1,
                          minlength=n)
        for name, per_row in (("words", words), ("pieces", lens), ("unk", unk), ("documents", lens > 0)):
            sums = np.bincount(lang_codes, weights=per_row, minlength=len(langs))
            packer.stats.update({f"{name}|{lang}": int(v) for lang, v in zip(langs, sums) if v})
        empty = np.sort(order[lens == 0])
        rejected = rejected_rows(batch, empty, [NO_TOKENS] * len(empty), [None] * len(empty), STAGE) \
            if len(empty) else None
        source = batch.column("source")[0].as_py() if n else ""
        row_starts = np.searchsorted(group, np.arange(len(splits) * len(langs) + 1))
        rows = []
        for g in np.unique(group[lens > 0]).tolist():
            first, last = row_starts[g], row_starts[g + 1]
            split, lang = splits[g // len(langs)], langs[g % len(langs)]
            out = packer.add(split, lang, source, flat[bounds[first]:bounds[last]], lens[first:last])
            if out is not None:
                rows.append(out)
        return rows, rejected

    def pack_tails(self, item: tuple[tuple[str, str], list[np.ndarray]]) -> StageResult:
        """All bundles' leftovers of one (split, language) -> its last sequences (one padded)."""
        (split, lang), tails = item
        packed = pack_tails(tails, self.options.seq_len, self.special.eos, self.special.pad)
        if not len(packed):
            return StageResult(None)
        rows = lm_rows(packed.input_ids, packed.attention_mask, split, lang, f"packed-tails/{split}/{lang}", 0,
                       f"{split}/{lang}/tails")
        return StageResult(rows, stats={f"sequences|{lang}": len(packed),
                                        f"tokens|{lang}": int(packed.attention_mask.sum())})

    def process(self, batch: pa.RecordBatch) -> StageResult:
        """One batch packed on its own: what a pipeline makes of an input of one batch."""
        packer = self.bundle()
        rows, rejected = self.pack_batch(batch, packer)
        stats = Counter(packer.stats)
        for key, tail in packer.tails():
            tails = self.pack_tails((key, [tail]))
            rows.append(tails.kept)
            stats.update(tails.stats)
        if not rows:
            empty = np.zeros((0, self.options.seq_len), np.int32)
            rows = [lm_rows(empty, empty, "", "", "", 0, "")]
        return StageResult(pa.concat_batches(rows), rejected, None, dict(stats))

    def transform(self):
        from xlcorpus.transforms.stages.finetune.passes import PackSequencesTransform

        return PackSequencesTransform(self)


class AlignNer(_Tokenized):
    """Examples with word ``tokens`` and ``ner_tags`` -> padded token-classification windows.
    An example whose tags do not fit its words or the label names is a dead letter."""

    dead_reason = "invalid_ner_example"

    def check(self) -> None:
        super().check()
        o = self.options
        if not 0 <= o.stride < o.max_length - 2:
            raise ValueError(f"stride must be < max_length - 2 = {o.max_length - 2}")

    def process(self, batch: pa.RecordBatch) -> StageResult:
        words = batch.column("tokens").to_pylist()
        tags = batch.column("ner_tags").to_pylist()
        n_labels = len(self.options.label_names)
        for i, (ws, ts) in enumerate(zip(words, tags)):
            if ws is None or ts is None:
                raise ValueError(f"row {batch.column('id')[i].as_py()!r}: field 'tokens' or 'ner_tags' is null")
            bad = [t for t in ts if t is None or not 0 <= t < n_labels]
            if bad:
                raise ValueError(f"row {batch.column('id')[i].as_py()!r}: field 'ner_tags' holds {bad[0]!r}, "
                                 f"not a label index in [0, {n_labels})")
        s = self.special
        L = self.options.max_length
        counts: list[tuple[int, int]] = []
        cols = align_ner(words, tags, self.sp, L, self.options.stride, s.bos, s.eos, s.pad, counts)
        take = pa.array(np.asarray(cols["example"], dtype=np.int64))
        base = batch.select(["id", "source", "line", "lang", "split", "tokens", "ner_tags"]).take(take)
        ids = [f"{i}#{w}" for i, w in zip(base.column("id").to_pylist(), cols["window"])]

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
        return StageResult(out, stats=dict(stats))

    def transform(self):
        from xlcorpus.transforms.stages.finetune.passes import AlignNerTransform

        return AlignNerTransform(self)
