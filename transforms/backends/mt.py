"""Machine translation for label projection: a CTranslate2 ``Translator`` plus
SentencePiece, with the vocabulary conventions of the usual converted models.

Conventions (what ``ct2-transformers-converter`` produces from each family):

- ``nllb``: source ``[src_lang] + pieces + </s>``, target prefix ``[tgt_lang]``
  (codes like ``eng_Latn``).
- ``m2m100``: the same with ``__xx__`` tokens (``en`` is accepted for ``__en__``).
- ``marian`` (OPUS-MT): source ``pieces + </s>``, no target prefix; a model has one
  direction, and may have separate ``source.spm`` / ``target.spm``.

``MTBackend`` gives the three things projection needs, each one batched call to the
model, batched by tokens: ``translate`` (pieces, scores, cross-attention), ``score``
(exact per-token log-probs of given targets, ``score_batch``) and
``next_token_logprobs`` (the model's next-token distribution at every position of a
given target, from ``translate_batch(target_prefix=..., return_logits_vocab=True)``
with ``min_decoding_length=0`` so nothing is masked: the values equal ``score_batch``'s;
``logprobs_at`` keeps only asked entries of it, what the constrained search uses).
Counters ``calls`` and ``sequences`` say how much model work was done.

``random_model`` writes a tiny randomly initialised Transformer with a chosen vocabulary
(tests and smoke checks of the conventions; its translations are garbage).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

log = logging.getLogger(__name__)
CONVENTIONS = ("nllb", "m2m100", "marian")
DEVICES = ("cpu", "cuda", "auto")  # CTranslate2's devices ("auto": CUDA when there is one)
# CTranslate2's compute types; which of them a device supports is checked when the model loads
COMPUTE_TYPES = ("default", "auto", "float32", "float16", "bfloat16", "int8", "int8_float32", "int8_float16",
                 "int8_bfloat16", "int16")
SPACE = "\u2581"  # SentencePiece's word-start marker


class MTOptions(BaseModel):
    """One translation model and how to run it (frozen: it keys the per-worker model).
    The first four fields may also be given by position: ``MTOptions(model, convention,
    src_lang, tgt_lang)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str  # CTranslate2 model directory
    convention: str = "nllb"
    src_lang: str | None = None  # nllb: eng_Latn; m2m100: en or __en__; marian: unused
    tgt_lang: str | None = None
    sp_model: str | None = None  # default: the SentencePiece model found in the model directory
    tgt_sp_model: str | None = None  # marian with separate target.spm
    device: str = "cpu"  # cpu | cuda | auto
    device_index: int | tuple[int, ...] = 0  # GPU(s) to load on (a tuple: one model copy per GPU)
    compute_type: str = "default"  # e.g. int8 on CPU, float16 or int8_float16 on CUDA
    inter_threads: int = 1
    intra_threads: int = 0
    max_batch_tokens: int = 4096  # batch_type="tokens"
    beam_size: int = 4
    max_decoding_length: int = 256
    source_eos: bool = True  # append </s> to the source (all three families do; a model trained without may not)

    def __init__(self, *args, **kwargs):
        if len(args) > len(_POSITIONAL):
            raise TypeError(f"MTOptions takes at most {len(_POSITIONAL)} positional arguments "
                            f"({', '.join(_POSITIONAL)})")
        super().__init__(**dict(zip(_POSITIONAL, args)), **kwargs)

    @field_validator("convention", "device", "compute_type")
    @classmethod
    def _one_of(cls, v: str, info: ValidationInfo) -> str:
        allowed = {"convention": CONVENTIONS, "device": DEVICES, "compute_type": COMPUTE_TYPES}[info.field_name]
        if v not in allowed:
            raise ValueError(f"mt.{info.field_name} must be one of {allowed}, got {v!r}")
        return v

    @field_validator("device_index")
    @classmethod
    def _device_index(cls, v):
        if any(i < 0 for i in ((v,) if isinstance(v, int) else v)) or v == ():
            raise ValueError(f"mt.device_index must be a GPU number >= 0 (or several), got {v!r}")
        return v


_POSITIONAL = ("model", "convention", "src_lang", "tgt_lang")


@dataclass
class Translation:
    tokens: list[str]  # target pieces, without language prefix or </s>
    score: float  # sum of log-probs (normalized by CTranslate2's length penalty)
    attention: np.ndarray | None = None  # (len(tokens), len(source tokens)) when asked


def language_token(convention: str, lang: str | None, side: str) -> str | None:
    """The vocabulary token naming ``lang`` under ``convention`` (None for marian)."""
    if convention == "marian":
        return None
    if not lang:
        raise ValueError(f"mt.{side}_lang is required for the {convention} convention")
    if convention == "m2m100" and not (lang.startswith("__") and lang.endswith("__")):
        return f"__{lang}__"
    return lang


def check_device(device: str, compute_type: str) -> None:
    """Fail with a clear message before CTranslate2 does with a cryptic one: CUDA asked
    for and not usable here, or a compute type the device cannot run."""
    import ctranslate2

    if device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
        raise RuntimeError("mt.device=cuda: CTranslate2 finds no usable CUDA device here (no GPU, or a driver "
                           "older than its CUDA runtime); use device=cpu or auto")
    resolved = "cuda" if device == "auto" and ctranslate2.get_cuda_device_count() > 0 else \
        ("cpu" if device == "auto" else device)
    if compute_type not in ("default", "auto"):
        supported = ctranslate2.get_supported_compute_types(resolved)
        if compute_type not in supported:
            raise ValueError(f"mt.compute_type={compute_type} is not supported on {resolved} here "
                             f"(supported: {', '.join(sorted(supported))})")


def _find_sp(model_dir: str, names: Sequence[str]) -> str | None:
    for name in names:
        path = os.path.join(model_dir, name)
        if os.path.exists(path):
            return path
    found = sorted(glob.glob(os.path.join(model_dir, "*.model")))
    return found[0] if found else None


def read_vocabulary(model_dir: str, side: str = "target") -> list[str]:
    """A converted model's vocabulary (``shared_vocabulary`` or ``{side}_vocabulary``,
    .json or .txt)."""
    for name in ("shared_vocabulary", f"{side}_vocabulary"):
        for ext in (".json", ".txt"):
            path = os.path.join(model_dir, name + ext)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    return json.load(f) if ext == ".json" else [line.rstrip("\n") for line in f]
    raise FileNotFoundError(f"{model_dir}: no shared_vocabulary or {side}_vocabulary file")


@dataclass
class _Counters:
    calls: int = 0  # batched requests to the model
    sequences: int = 0  # sequences sent through the model
    by_kind: dict = field(default_factory=dict)


class MTBackend:
    """One loaded model (per worker; see ``load_backend``) and its tokenizers."""

    def __init__(self, opts: MTOptions):
        import ctranslate2
        import sentencepiece as spm

        self.opts = opts
        if not os.path.isdir(opts.model):
            raise FileNotFoundError(f"mt.model: {opts.model} is not a CTranslate2 model directory")
        check_device(opts.device, opts.compute_type)
        self.translator = ctranslate2.Translator(opts.model, device=opts.device, device_index=list(
            (opts.device_index,) if isinstance(opts.device_index, int) else opts.device_index),
            compute_type=opts.compute_type, inter_threads=opts.inter_threads, intra_threads=opts.intra_threads)
        src_sp = opts.sp_model or _find_sp(opts.model, ("sentencepiece.bpe.model", "spm.model", "source.spm"))
        if src_sp is None:
            raise FileNotFoundError(f"mt.sp_model: no SentencePiece model given or found in {opts.model}")
        tgt_sp = opts.tgt_sp_model or (_find_sp(opts.model, ("target.spm",)) if opts.convention == "marian"
                                       else None) or src_sp
        self.src_sp = spm.SentencePieceProcessor(model_file=src_sp)
        self.tgt_sp = self.src_sp if tgt_sp == src_sp else spm.SentencePieceProcessor(model_file=tgt_sp)
        self.target_vocab = read_vocabulary(opts.model, "target")
        self.target_index = {t: i for i, t in enumerate(self.target_vocab)}
        self.source_vocab = set(read_vocabulary(opts.model, "source"))
        self.counters = _Counters()
        self.set_languages(opts.src_lang, opts.tgt_lang)

    # --- conventions ------------------------------------------------------------
    def set_languages(self, src_lang: str | None, tgt_lang: str | None) -> None:
        conv = self.opts.convention
        self.src_token = language_token(conv, src_lang, "src")
        self.tgt_token = language_token(conv, tgt_lang, "tgt")
        for tok, side, vocab in ((self.src_token, "src", self.source_vocab),
                                 (self.tgt_token, "tgt", self.target_index)):
            if tok is not None and tok not in vocab:
                raise ValueError(f"mt.{side}_lang: {tok!r} is not in the model's vocabulary "
                                 f"({conv} convention)")

    def reversed(self) -> MTBackend:
        """The same model translating the other way (multilingual conventions only)."""
        if self.opts.convention == "marian":
            raise ValueError("a marian model has one direction: give a reverse model for translate-test")
        twin = object.__new__(MTBackend)
        twin.__dict__.update(self.__dict__)
        twin.src_sp, twin.tgt_sp = self.tgt_sp, self.src_sp
        twin.src_token, twin.tgt_token = self.tgt_token, self.src_token
        return twin

    @property
    def target_prefix(self) -> list[str]:
        return [self.tgt_token] if self.tgt_token else []

    def source_tokens(self, text_or_pieces: str | list[str]) -> list[str]:
        pieces = (self.src_sp.encode(text_or_pieces, out_type=str) if isinstance(text_or_pieces, str)
                  else list(text_or_pieces))
        return ([self.src_token] if self.src_token else []) + pieces + (["</s>"] if self.opts.source_eos else [])

    def target_pieces(self, text: str) -> list[str]:
        return self.tgt_sp.encode(text, out_type=str)

    def source_pieces(self, text: str) -> list[str]:
        return self.src_sp.encode(text, out_type=str)

    def decode(self, pieces: Sequence[str]) -> str:
        return self.tgt_sp.decode_pieces(list(pieces))

    def token_id(self, token: str) -> int:
        return self.target_index.get(token, self.target_index.get("<unk>", 0))

    def _count(self, kind: str, n: int) -> None:
        c = self.counters
        c.calls += 1
        c.sequences += n
        c.by_kind[kind] = c.by_kind.get(kind, 0) + n

    # --- model calls --------------------------------------------------------------
    def translate(self, sources: Sequence[list[str]], attention: bool = False, beam_size: int | None = None,
                  prefixes: Sequence[list[str]] | None = None) -> list[Translation]:
        """Translate source token sequences (``source_tokens``); with ``prefixes`` the
        target is forced to start with those pieces (e.g. to get attention over a given
        target: pass the whole target and it is reproduced)."""
        if not sources:
            return []
        pre = self.target_prefix
        n = len(pre)
        target_prefix = [pre + list(p) for p in prefixes] if prefixes is not None else (
            [pre] * len(sources) if pre else None)
        max_len = self.opts.max_decoding_length
        if prefixes is not None:
            max_len = max(max_len, max(len(p) for p in target_prefix) + 1)
        results = self.translator.translate_batch(
            list(sources), target_prefix=target_prefix, max_batch_size=self.opts.max_batch_tokens,
            batch_type="tokens", beam_size=beam_size or self.opts.beam_size, return_scores=True,
            return_attention=attention, max_decoding_length=max_len)
        self._count("translate", len(sources))
        out = []
        for k, r in enumerate(results):
            tokens = r.hypotheses[0][n:]
            att = None
            if attention:
                att = np.asarray(r.attention[0], dtype=np.float32)[n:n + len(tokens)]
            if prefixes is not None:  # forced: keep exactly the given target
                keep = len(prefixes[k])
                tokens, att = tokens[:keep], (att[:keep] if att is not None else None)
            out.append(Translation(tokens, float(r.scores[0]) if r.scores else 0.0, att))
        return out

    def score(self, sources: Sequence[list[str]], targets: Sequence[list[str]], max_tokens: int | None = None
              ) -> list[np.ndarray]:
        """Per-token log-probs of each target (pieces, no prefix) given its source,
        with the final </s> as the last entry: one ``score_batch`` call per group of
        similar lengths of at most ``max_tokens`` (default ``max_batch_tokens``) tokens."""
        if not sources:
            return []
        pre = self.target_prefix
        out: list[np.ndarray | None] = [None] * len(sources)
        groups = length_groups([len(t) for t in targets], [len(s) for s in sources],
                               max_tokens or self.opts.max_batch_tokens)
        # max_batch_size=0: the group is the batch (CTranslate2 would re-sort by source length only);
        # asynchronous: the groups run side by side on the translator's inter_threads workers
        pending = [self.translator.score_batch(
            [sources[k] for k in group], [pre + list(targets[k]) for k in group], max_batch_size=0,
            offset=len(pre), asynchronous=True) for group in groups]
        for group, results in zip(groups, pending):
            self._count("score", len(group))
            for k, r in zip(group, results):
                out[k] = np.asarray(r.result().log_probs, dtype=np.float64)
        return out

    def next_token_logprobs(self, sources: Sequence[list[str]], targets: Sequence[list[str]],
                            columns: Sequence[int] | None = None) -> list[np.ndarray]:
        """For each target (pieces, no prefix): an array (len(target) + 1, V) whose row
        k is log p(. | source, target[:k]) (row len(target): the distribution after the
        whole target). ``columns`` keeps only those vocabulary ids."""
        return [cols for _tok, cols in self.along(sources, targets, columns)]

    def _forced_passes(self, sources: Sequence[list[str]], targets: Sequence[list[str]], max_tokens: int | None):
        """One teacher-forced pass per target, batched like ``score``: yields (index, the
        per-step logits rows after the target prefix, row k = the logits after target[:k])."""
        pre = self.target_prefix
        n = len(pre)
        groups = length_groups([len(t) for t in targets], [len(s) for s in sources],
                               max_tokens or self.opts.max_batch_tokens)
        pending = []
        for group in groups:
            prefixes = [pre + list(targets[k]) for k in group]
            # min_decoding_length=0: otherwise </s> is masked at the first step and the
            # first row is not the model's distribution. max_batch_size=0: the group is the batch.
            pending.append(self.translator.translate_batch(
                [sources[k] for k in group], target_prefix=prefixes, max_batch_size=0, beam_size=1,
                return_logits_vocab=True, min_decoding_length=0,
                max_decoding_length=max(len(p) for p in prefixes) + 1, asynchronous=True))
        for group, results in zip(groups, pending):
            self._count("next_token", len(group))
            for k, r in zip(group, results):
                yield k, r.result().logits[0][n:n + len(targets[k]) + 1]

    def along(self, sources: Sequence[list[str]], targets: Sequence[list[str]],
              columns: Sequence[int] | None = None, max_tokens: int | None = None
              ) -> list[tuple[np.ndarray, np.ndarray]]:
        """One teacher-forced pass per target: (log-prob of each target piece, shape
        (len,), and the next-token log-probs at every position, shape (len + 1, V) or
        (len + 1, len(columns))). The piece log-probs equal ``score``'s. Batched like
        ``score``."""
        if not sources:
            return []
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(sources)
        for k, rows in self._forced_passes(sources, targets, max_tokens):
            t = targets[k]
            logits = np.asarray(rows, dtype=np.float32)
            m = logits.max(axis=1, keepdims=True)
            # log-softmax over the vocabulary, the normaliser summed in float64
            lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True, dtype=np.float64))).astype(np.float64)
            ids = np.array([self.token_id(x) for x in t], dtype=np.int64)
            token_lp = logits[np.arange(len(t)), ids].astype(np.float64) - lse[: len(t), 0]
            # float32 like the logits: no float64 copy of every vocabulary row
            cols = (logits if columns is None else logits[:, list(columns)]) - lse.astype(np.float32)
            out[k] = (token_lp, cols)
        return out

    def logprobs_at(self, sources: Sequence[list[str]], targets: Sequence[list[str]],
                    queries: Sequence[Sequence[tuple[int, int]]], max_tokens: int | None = None
                    ) -> list[np.ndarray]:
        """``along`` reduced to what is asked: for each target, log p(token id | source,
        target[:k]) for each (k, token id) of its queries (0 <= k <= len(target)), float64.
        Only the asked rows are normalised (the constrained search needs a few entries of
        a few rows)."""
        if not sources:
            return []
        out: list[np.ndarray | None] = [None] * len(sources)
        for k, rows in self._forced_passes(sources, targets, max_tokens):
            lse: dict[int, tuple[np.ndarray, float]] = {}
            values = []
            for pos, token in queries[k]:
                if not 0 <= pos <= len(targets[k]):
                    raise IndexError(f"logprobs_at: position {pos} outside target {k} of {len(targets[k])} tokens")
                if pos not in lse:
                    row = np.asarray(rows[pos], dtype=np.float32)
                    m = float(row.max())
                    lse[pos] = row, m + math.log(float(np.exp(row - m).sum(dtype=np.float64)))
                row, norm = lse[pos]
                values.append(float(row[token]) - norm)
            out[k] = np.array(values, dtype=np.float64)
        return out


def length_groups(target_lengths: Sequence[int], source_lengths: Sequence[int], max_tokens: int
                  ) -> list[list[int]]:
    """Indices grouped into batches of similar length: sorted by (target, source)
    length, each batch at most ``max_tokens`` padded tokens on its longer side (and at
    least one sequence)."""
    order = sorted(range(len(target_lengths)), key=lambda k: (target_lengths[k], source_lengths[k]))
    groups: list[list[int]] = []
    group: list[int] = []
    longest = 0
    for k in order:
        size = max(target_lengths[k], source_lengths[k])
        if group and max(longest, size) * (len(group) + 1) > max_tokens:
            groups.append(group)
            group, longest = [], 0
        group.append(k)
        longest = max(longest, size)
    if group:
        groups.append(group)
    return groups


def load_backend(opts: MTOptions) -> MTBackend:
    return MTBackend(opts)


# --- tiny random models (tests, convention smoke checks) -----------------------------------
def convention_vocabulary(convention: str, pieces: Sequence[str], langs: Sequence[str] = ()) -> list[str]:
    """A vocabulary laid out like the converted family's: specials, pieces, language tokens."""
    if convention == "nllb":
        head = ["<s>", "<pad>", "</s>", "<unk>"]
        tail = list(langs)
    elif convention == "m2m100":
        head = ["<s>", "<pad>", "</s>", "<unk>"]
        tail = [language_token("m2m100", x, "src") for x in langs]
    else:
        head = ["</s>", "<unk>", "<pad>"]
        tail = []
    seen = set(head) | set(tail)
    return head + [p for p in pieces if p not in seen and not seen.add(p)] + tail


def random_model(output_dir: str, vocabulary: Sequence[str], convention: str = "nllb", d_model: int = 32,
                 ffn: int = 64, layers: int = 2, heads: int = 2, seed: int = 0,
                 sp_model: str | None = None, output_scale: float = 1.0) -> str:
    """Write a randomly initialised CTranslate2 Transformer with this (shared) vocabulary
    and the family's decoder start token; copy ``sp_model`` next to it. A larger
    ``output_scale`` makes the next-token distributions peakier (more like a trained model)."""
    import shutil

    from ctranslate2.specs import transformer_spec

    rng = np.random.default_rng(seed)
    v = len(vocabulary)

    def lin(spec, out_dim, in_dim):
        spec.weight = rng.normal(0, in_dim ** -0.5, (out_dim, in_dim)).astype(np.float32)
        spec.bias = rng.normal(0, 0.1, out_dim).astype(np.float32)

    def norm(spec):
        spec.gamma = np.ones(d_model, np.float32)
        spec.beta = np.zeros(d_model, np.float32)

    def attention(spec, self_attention):
        norm(spec.layer_norm)
        if self_attention:  # fused QKV, then output
            lin(spec.linear[0], 3 * d_model, d_model)
            lin(spec.linear[1], d_model, d_model)
        else:  # query, fused KV over the encoder output, output
            lin(spec.linear[0], d_model, d_model)
            lin(spec.linear[1], 2 * d_model, d_model)
            lin(spec.linear[2], d_model, d_model)

    def ffn_(spec):
        norm(spec.layer_norm)
        lin(spec.linear_0, ffn, d_model)
        lin(spec.linear_1, d_model, ffn)

    spec = transformer_spec.TransformerSpec.from_config(layers, heads)
    spec.encoder.embeddings[0].weight = rng.normal(0, 1, (v, d_model)).astype(np.float32)
    norm(spec.encoder.layer_norm)
    for layer in spec.encoder.layer:
        attention(layer.self_attention, True)
        ffn_(layer.ffn)
    spec.decoder.embeddings.weight = rng.normal(0, 1, (v, d_model)).astype(np.float32)
    norm(spec.decoder.layer_norm)
    for layer in spec.decoder.layer:
        attention(layer.self_attention, True)
        attention(layer.attention, False)
        ffn_(layer.ffn)
    lin(spec.decoder.projection, v, d_model)
    spec.decoder.projection.weight *= output_scale
    spec.register_source_vocabulary(list(vocabulary))
    spec.register_target_vocabulary(list(vocabulary))
    # NLLB and M2M-100 start decoding from </s> then the language token; Marian from <pad>.
    spec.config.decoder_start_token = "<pad>" if convention == "marian" else "</s>"
    spec.validate()
    spec.optimize(None)
    os.makedirs(output_dir, exist_ok=True)
    spec.save(output_dir)
    if sp_model:
        shutil.copy(sp_model, os.path.join(output_dir, "source.spm" if convention == "marian"
                                           else "sentencepiece.bpe.model"))
    return output_dir
