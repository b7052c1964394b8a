"""SentencePiece for the fine-tuning stages: training, loading once per worker, the
special ids the outputs use, and fertility (pieces per word) per language.

SentencePiece is called once per batch (``sp.encode(list_of_str)``), never once per
row. A *word* is a whitespace-separated token (``str.split()``); fertility is pieces
per such word, which is what matters to a model that sees the text.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xlcorpus.transforms.backends.model_cache import local_copy
from xlcorpus.transforms.core.models import shared_model
from xlcorpus.transforms.stages.finetune.common import stats_section

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


def word_counts(texts: Sequence[str | None]) -> np.ndarray:
    """``len(text.split())`` per row (0 for None). Plain str.split on purpose: Arrow's
    utf8_split_whitespace counts empty pieces at the ends, and a numpy count over the
    UTF-8 buffer measured slower on mixed-script batches."""
    return np.fromiter((len(t.split()) if t else 0 for t in texts), dtype=np.int64, count=len(texts))


def fertility_from_stats(stats: Mapping[str, int]) -> dict[str, dict[str, float]]:
    """``fertility_report``'s table from the stages' ``words|``, ``pieces|`` and ``unk|`` counters."""
    words, pieces, unk = (stats_section(stats, s) for s in ("words", "pieces", "unk"))
    return {lang: {"words": w, "pieces": pieces.get(lang, 0),
                   "fertility": pieces.get(lang, 0) / w if w else 0.0,
                   "unk_rate": unk.get(lang, 0) / pieces[lang] if pieces.get(lang) else 0.0}
            for lang, w in sorted(words.items())}


def load_tokenizer(path: str):
    """The SentencePiece model at ``path`` (local or on shared storage), loaded once per
    worker process."""
    def load():
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_file=local_copy(path))

    return shared_model(f"sentencepiece:{path}", load)


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
