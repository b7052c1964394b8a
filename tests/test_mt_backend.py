"""MT backend: vocabulary conventions (NLLB, M2M-100, Marian) on tiny random models,
and the model calls projection relies on (score, next-token log-probs, attention)."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from xlcorpus.transforms.backends import mt as mb

WORDS = ["the", "a", "man", "woman", "city", "river", "house", "went", "saw", "big", "small", "red", "blue", "to", "from", "in", "on", "at", "with", "Maria", "John", "Anna", "Berg", "Kavia", "Tarvia", "Acme", "Bank", "Cup", "North"]


def tiny_sentences(n: int = 300, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def train_sp(path) -> str:
    """A small SentencePiece model whose markers are the pieces ▁[ and ▁]."""
    import sentencepiece as spm

    lines = tiny_sentences()
    lines += [f"[ {x} ]" for x in lines[:60]]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=buf, vocab_size=60,
                                   hard_vocab_limit=False, model_type="unigram", character_coverage=1.0,
                                   user_defined_symbols=["▁[", "▁]"], bos_id=-1, eos_id=-1, pad_id=-1,
                                   minloglevel=2)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return str(path)


LANGS = {"nllb": ("eng_Latn", "xxx_Latn"), "m2m100": ("en", "xx"), "marian": (None, None)}


def tiny_model(directory, convention: str, seed: int = 0, output_scale: float = 1.0) -> str:
    import sentencepiece as spm

    directory.mkdir(parents=True, exist_ok=True)
    sp_path = train_sp(directory / "train.spm")
    sp = spm.SentencePieceProcessor(model_file=sp_path)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    langs = [x for x in LANGS[convention] if x]
    vocab = mb.convention_vocabulary(convention, pieces, langs)
    return mb.random_model(str(directory / convention), vocab, convention, seed=seed, sp_model=sp_path,
                           output_scale=output_scale)


@pytest.fixture(scope="module", params=["nllb", "m2m100", "marian"])
def backend(request, tmp_path_factory):
    conv = request.param
    model = tiny_model(tmp_path_factory.mktemp(conv), conv)
    src, tgt = LANGS[conv]
    return mb.MTBackend(mb.MTOptions(model, conv, src, tgt, max_decoding_length=12, beam_size=2))


def test_convention_layout(backend):
    conv = backend.opts.convention
    pieces = backend.source_pieces("Maria saw the river")
    tokens = backend.source_tokens("Maria saw the river")
    expected = {"nllb": ["eng_Latn"] + pieces + ["</s>"], "m2m100": ["__en__"] + pieces + ["</s>"],
                "marian": pieces + ["</s>"]}[conv]
    assert tokens == expected
    assert backend.target_prefix == {"nllb": ["xxx_Latn"], "m2m100": ["__xx__"], "marian": []}[conv]
    with open(f"{backend.opts.model}/config.json") as f:
        config = json.load(f)
    assert config["decoder_start_token"] == ("<pad>" if conv == "marian" else "</s>")
    assert backend.target_pieces("[ Maria ]")[0] == "▁["


def test_translate_strips_prefix_and_returns_attention(backend):
    srcs = [backend.source_tokens(t) for t in ("Maria saw the river", "a big house")]
    out = backend.translate(srcs, attention=True)
    assert len(out) == 2
    for tr, src in zip(out, srcs):
        assert tr.tokens and not any(t in ("xxx_Latn", "__xx__") for t in tr.tokens[:1])
        assert tr.attention.shape == (len(tr.tokens), len(src))
        sums = tr.attention.sum(axis=1)
        # CTranslate2 4.8 quirk: with beam search in a padded batch, the first step of a
        # shorter source puts some attention on padding; every later row is a distribution.
        assert (sums <= 1 + 1e-4).all() and np.allclose(sums[1:], 1.0, atol=1e-4)
    # forced decoding reproduces a given target and attends over it
    given = backend.target_pieces("the man went to Kavia")
    forced = backend.translate(srcs[:1], attention=True, prefixes=[given])[0]
    assert forced.tokens == given and forced.attention.shape == (len(given), len(srcs[0]))


def test_next_token_logprobs_equal_score_batch(backend):
    """The teacher-forced pass (translate_batch + return_logits_vocab) and score_batch
    give the same per-token log-probs: what makes the constrained search's bounds exact."""
    srcs = [backend.source_tokens(t) for t in ("Maria saw the river", "Anna Berg went to Tarvia with John")]
    tgts = [backend.target_pieces("the man went to Kavia"), backend.target_pieces("[ Acme ] big")]
    scores = backend.score(srcs, tgts)
    along = backend.along(srcs, tgts)
    dists = backend.next_token_logprobs(srcs, tgts)
    for tgt, lp, (tok_lp, full), dist in zip(tgts, scores, along, dists):
        assert len(lp) == len(tgt) + 1  # + </s>
        np.testing.assert_allclose(tok_lp, lp[:-1], atol=1e-4)
        np.testing.assert_allclose(full[len(tgt), backend.token_id("</s>")], lp[-1], atol=1e-4)
        assert full.shape == (len(tgt) + 1, len(backend.target_vocab))
        np.testing.assert_allclose(np.exp(full).sum(axis=1), 1.0, atol=1e-4)
        np.testing.assert_allclose(dist, full)
    assert backend.counters.by_kind["score"] >= 2


def test_logprobs_at_are_the_asked_entries_of_along(backend):
    srcs = [backend.source_tokens(t) for t in ("Maria saw the river", "Anna Berg went to Tarvia with John")]
    tgts = [backend.target_pieces("the man went to Kavia"), backend.target_pieces("[ Acme ] big")]
    eos = backend.token_id("</s>")
    queries = [[(0, 5), (len(tgts[0]), eos), (2, 7), (0, 9)], [(len(tgts[1]), eos), (1, 4)]]
    full = backend.along(srcs, tgts)
    got = backend.logprobs_at(srcs, tgts, queries, max_tokens=16)  # one target per batch
    for (_tok, dist), asked, values in zip(full, queries, got):
        assert values.dtype == np.float64 and len(values) == len(asked)
        np.testing.assert_allclose(values, [dist[k, t] for k, t in asked], atol=1e-5)
    # the entry after the whole target is log p(</s>): score_batch's last entry
    np.testing.assert_allclose(got[1][0], backend.score(srcs[1:], tgts[1:])[0][-1], atol=1e-4)
    assert backend.logprobs_at([], [], []) == []


def test_language_checks(tmp_path):
    model = tiny_model(tmp_path, "nllb")
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        mb.MTBackend(mb.MTOptions(model, "nllb", "eng_Latn", "fra_Latn"))
    with pytest.raises(ValueError, match="tgt_lang is required"):
        mb.MTBackend(mb.MTOptions(model, "nllb", "eng_Latn", None))
    with pytest.raises(ValueError, match="convention"):
        mb.MTOptions(model, "t5")
    with pytest.raises(FileNotFoundError):
        mb.MTBackend(mb.MTOptions(str(tmp_path / "missing"), "nllb", "eng_Latn", "xxx_Latn"))
    fw = mb.MTBackend(mb.MTOptions(model, "nllb", "eng_Latn", "xxx_Latn"))
    rev = fw.reversed()
    assert rev.source_tokens("a")[0] == "xxx_Latn" and rev.target_prefix == ["eng_Latn"]
    assert fw.source_tokens("a")[0] == "eng_Latn"


def test_length_groups_sort_and_cap_padded_tokens():
    targets = [9, 2, 5, 2, 9, 30]
    sources = [8, 3, 6, 1, 12, 4]
    groups = mb.length_groups(targets, sources, 24)
    assert sorted(k for g in groups for k in g) == list(range(6))
    flat = [k for g in groups for k in g]
    assert [targets[k] for k in flat] == sorted(targets)  # shortest targets first, similar lengths together
    for g in groups:  # padded tokens on the longer side stay within the budget, unless one sequence alone is longer
        assert len(g) == 1 or max(max(targets[k], sources[k]) for k in g) * len(g) <= 24
    assert groups[-1] == [5]  # 30 tokens: a batch of its own


def test_device_and_compute_type_options():
    """The GPU path's options are checked where they are given; CI has no GPU."""
    with pytest.raises(ValueError, match="device"):
        mb.MTOptions("m", "nllb", device="tpu")
    with pytest.raises(ValueError, match="compute_type"):
        mb.MTOptions("m", "nllb", compute_type="float8")
    with pytest.raises(ValueError, match="device_index"):
        mb.MTOptions("m", "nllb", device_index=-1)
    o = mb.MTOptions("m", "nllb", device="cuda", compute_type="int8_float16", device_index=(0, 1))
    assert (o.device, o.compute_type, o.device_index) == ("cuda", "int8_float16", (0, 1))


def test_device_and_compute_type_reach_ctranslate2(tmp_path):
    import ctranslate2

    model = tiny_model(tmp_path, "marian")
    fw = mb.MTBackend(mb.MTOptions(model, "marian", compute_type="int8"))
    assert fw.translator.device == "cpu" and fw.translator.compute_type.startswith("int8")
    assert fw.translator.device_index == [0]
    assert fw.translate([fw.source_tokens("Maria saw the river")])[0].tokens  # and it runs quantized
    fw32 = mb.MTBackend(mb.MTOptions(model, "marian", compute_type="float32", device="auto"))
    expected = "cuda" if ctranslate2.get_cuda_device_count() else "cpu"
    assert fw32.translator.device == expected and fw32.translator.compute_type == "float32"
    if "float16" not in ctranslate2.get_supported_compute_types("cpu"):
        with pytest.raises(ValueError, match="not supported on cpu"):
            mb.MTBackend(mb.MTOptions(model, "marian", compute_type="float16"))
    if ctranslate2.get_cuda_device_count() == 0:
        with pytest.raises(RuntimeError, match="no usable CUDA device"):
            mb.MTBackend(mb.MTOptions(model, "marian", device="cuda"))


@pytest.mark.skipif("not __import__('ctranslate2').get_cuda_device_count()", reason="needs a CUDA device")
def test_cuda_scores_match_cpu(tmp_path):
    """On a GPU: the same model scores the same targets as on the CPU (float32)."""
    model = tiny_model(tmp_path, "nllb")
    src, tgt = ("eng_Latn", "xxx_Latn")
    cpu = mb.MTBackend(mb.MTOptions(model, "nllb", src, tgt, compute_type="float32"))
    gpu = mb.MTBackend(mb.MTOptions(model, "nllb", src, tgt, device="cuda", compute_type="float32"))
    s = [cpu.source_tokens("Maria saw the river")]
    t = [cpu.target_pieces("the man went to Kavia")]
    np.testing.assert_allclose(gpu.score(s, t)[0], cpu.score(s, t)[0], atol=1e-3)
    (tok_c, dist_c), (tok_g, dist_g) = cpu.along(s, t)[0], gpu.along(s, t)[0]
    np.testing.assert_allclose(tok_g, tok_c, atol=1e-3)
    np.testing.assert_allclose(dist_g, dist_c, atol=1e-3)
