"""Per-word origin (etymology) classifier at run time: a trained model's options,
``OriginClassifier.load`` / ``predict`` and its on-disk format.

Maltese words are of Semitic (Arabic) or Romance/English (Non-Arabic) origin, names,
symbols or English code-switching; transliteration treats each kind differently.
Each token is decided, in order, by:

1. a lookup of tokens seen in training with one label or a clear majority;
2. a fixed label for tokens without letters, when the training data agrees on one;
3. a fastText character n-gram model (minn..maxn) over the lowercased token plus
   capitalisation flags, whose class probabilities feed
4. a small context model (multinomial logistic regression): the neighbours' labels,
   capitalisation, the labels of other-case variants seen in training, the rest of
   the sentence. It is trained on out-of-fold n-gram predictions for tokens unseen in
   the inner training folds, so it learns how far the n-gram model can be trusted on
   new words; English words inside Maltese text come in runs, names next to names.

Pure core: no Beam. Training and cross-validation (``xlcorpus etymology
train|evaluate``) live in ``xlcorpus.pipelines.etymology``, off the run-time path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xlcorpus.transforms.stages.transliterate.features import (
    LETTER, Lookup, context_features, ngram_proba, ngram_text, run_starts, sentence_runs,
)

STAGE = "etymology"
FORMAT_VERSION = 1
MODEL_JSON, NGRAM_BIN = "origin.json", "ngram.bin"


@dataclass(frozen=True)
class OriginOptions:
    """Hyperparameters; the defaults were chosen by 10-fold cross-validation on MLRS."""

    minn: int = 1  # character n-gram lengths of the fastText model
    maxn: int = 5
    dim: int = 50
    epoch: int = 25
    lr: float = 0.5
    bucket: int = 50_000
    seed: int = 0
    lookup_share: float = 0.5  # a seen token is looked up when its top label has more than this share
    symbol_share: float = 0.95  # letterless tokens get a fixed label when this share of them agree
    inner_folds: int = 5  # cross-fitting folds for the context model; 0 or 1: no context model
    context_l2: float = 3.0  # L2 penalty (summed loss) of the context model
    min_context_examples: int = 20  # fewer out-of-fold examples: no context model

    @classmethod
    def from_dict(cls, d: Mapping) -> OriginOptions:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class OriginClassifier:
    """Token -> origin label. ``predict`` / ``save`` / ``load``; built by ``load`` or by
    the trainer (``xlcorpus.pipelines.etymology.fit``).

    Tokens are passed in running order with optional sentence ids: adjacent tokens
    with the same id are each other's context. Without ids every token stands alone.
    """

    def __init__(self, options: OriginOptions, labels: Sequence[str], ngram, lookup: Lookup,
                 symbol: int | None = None, context: np.ndarray | None = None):
        self.options = options
        self.labels: list[str] = list(labels)
        self._ngram = ngram  # the fastText model
        self._lookup = lookup
        self._symbol = symbol  # label of letterless tokens, if the data agrees on one
        self._context = context  # context-model weights

    # prediction ---------------------------------------------------------------------
    def predict_indices(self, tokens: Sequence[str], sentence_ids: Sequence | None = None) -> np.ndarray:
        """Label index per token (into ``self.labels``)."""
        tokens = [str(t) for t in tokens]
        n = len(tokens)
        runs = sentence_runs(sentence_ids, n)
        if n == 0:
            return np.zeros(0, np.int64)
        initial = run_starts(runs)
        proba = ngram_proba(self._ngram, [ngram_text(t, bool(f)) for t, f in zip(tokens, initial)],
                            len(self.labels))
        known = self._lookup.known(tokens, self.options.lookup_share)
        if self._context is not None:
            X = context_features(tokens, runs, proba, known, self._lookup.lowercase)
            guess = np.argmax(X @ self._context, axis=1)
        else:
            guess = np.argmax(proba, axis=1)
        if self._symbol is not None:
            guess[np.fromiter((not LETTER.search(t) for t in tokens), bool, n)] = self._symbol
        return np.where(known >= 0, known, guess)

    def predict(self, tokens: Sequence[str], sentence_ids: Sequence | None = None) -> list[str]:
        """Origin label per token; one fastText call for the whole batch."""
        return [self.labels[i] for i in self.predict_indices(tokens, sentence_ids).tolist()]

    def predict_array(self, tokens: pa.Array, sentence_ids: pa.Array | None = None) -> pa.Array:
        """Arrow in, Arrow out (a string column for a RecordBatch); null tokens stay null."""
        valid = pc.is_valid(tokens).to_numpy(zero_copy_only=False)
        labels = np.asarray(self.labels, dtype=object)[
            self.predict_indices(pc.fill_null(tokens, "").to_pylist(),
                                 None if sentence_ids is None else sentence_ids.to_pylist())]
        return pa.array(labels, pa.string(), mask=~valid)

    def is_seen(self, tokens: Sequence[str]) -> list[bool]:
        """Whether each token occurred in the training data."""
        return [t in self._lookup.exact for t in tokens]

    # persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike, quantize: bool = False) -> Path:
        """Write a model directory: the fastText model (its own format) and a JSON file.

        ``quantize``: product-quantize the n-gram model first (no retraining): ~7x
        smaller (10.5 MB -> 1.4 MB on MLRS) for ~0.5 points of unseen-token accuracy
        (3-fold on MLRS: 91.5% -> 91.0%). The shipped ``mlt-etymology`` is quantized.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if quantize:
            self._ngram.quantize(retrain=False)
        self._ngram.save_model(str(path / NGRAM_BIN))
        state = {
            "format": FORMAT_VERSION, "stage": STAGE, "options": asdict(self.options), "labels": self.labels,
            "symbol_label": None if self._symbol is None else self.labels[self._symbol],
            "context_weights": None if self._context is None else self._context.tolist(),
            "lookup": self._lookup.exact, "lowercase": self._lookup.lowercase,
        }
        (path / MODEL_JSON).write_text(json.dumps(state, ensure_ascii=False, sort_keys=True), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> OriginClassifier:
        import fasttext

        path = Path(path)
        state = json.loads((path / MODEL_JSON).read_text(encoding="utf-8"))
        if state.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported etymology model format {state.get('format')!r}")
        labels = list(state["labels"])
        return cls(OriginOptions.from_dict(state["options"]), labels,
                   ngram=fasttext.load_model(str(path / NGRAM_BIN)),
                   lookup=Lookup(len(labels), state["lookup"], state["lowercase"]),
                   symbol=None if state["symbol_label"] is None else labels.index(state["symbol_label"]),
                   context=None if state["context_weights"] is None else np.asarray(state["context_weights"], float))
