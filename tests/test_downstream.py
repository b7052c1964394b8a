"""The downstream benchmark's training and evaluation code (bench/downstream), on tiny
inputs: seqeval-strict span scoring, tags <-> spans, the tokenization the translate-test
predictor uses against what `xlcorpus finetune --task ner` writes, the tagger (it
learns, it is seeded), the predictor entry point, and the intrinsic projection score."""

from __future__ import annotations

import numpy as np
import pytest
import sentencepiece as spm
import torch
from bench import synthetic_pair as sp
from bench.downstream import jobs
from bench.downstream.harness import REVERSE_MODEL, evaluate_tagger, intrinsic_f1
from bench.downstream.predictor import SPM_ENV, TAGGER_ENV, tag_source, tag_texts
from bench.downstream.scoring import span_prf, word_spans
from bench.downstream.tagger import (
    IGNORE_INDEX,
    Encoded,
    Tagger,
    TaggerConfig,
    encode_words,
    load_tagger,
    predict_word_tags,
    save_tagger,
    train_tagger,
)

SPM_PATH = sp.reference_model_dir() / "spm.model"
NAMES = jobs.iob2_names(sp.LABELS)
INDEX = {n: k for k, n in enumerate(NAMES)}


@pytest.fixture(scope="module")
def sentencepiece_model():
    return spm.SentencePieceProcessor(model_file=str(SPM_PATH))


@pytest.fixture(scope="module")
def tiny_pairs():
    return sp.generate(80, seed=5, split="train")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On a shared 2-core machine two torch threads train this LSTM many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(**kw) -> TaggerConfig:
    # no dropout, many small steps: 80 sentences are learnt by heart in about a second
    return TaggerConfig(**{"vocab_size": 1000, "n_labels": len(NAMES), "embed_dim": 32, "hidden": 48,
                           "dropout": 0.0, "epochs": 20, "batch_size": 16, "lr": 1e-2, **kw})


def encoded_gold(sentencepiece_model, pairs) -> Encoded:
    return encode_words(sentencepiece_model, [p.tgt_tokens for p in pairs],
                        [[INDEX[t] for t in p.tgt_tags] for p in pairs])


# --- scoring ---------------------------------------------------------------------------
def test_span_prf_is_exact_match_and_strict():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    # right PER; LOC with the wrong type; ORG only as a stray I- (strict: no entity)
    pred = [["B-PER", "I-PER", "O", "B-MISC"], ["I-ORG", "O"]]
    s = span_prf(gold, pred)
    assert (s["gold_entities"], s["predicted_entities"]) == (3, 2)
    assert s["precision"] == pytest.approx(1 / 2) and s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    # a span one word short is a miss, not half a hit
    assert span_prf([["B-PER", "I-PER"]], [["B-PER", "O"]])["f1"] == 0.0
    assert span_prf(gold, gold)["f1"] == 1.0
    with pytest.raises(ValueError):
        span_prf(gold, [["O"]])


def test_word_spans_round_trip_the_synthetic_gold(tiny_pairs):
    for p in tiny_pairs:
        spans = word_spans(p.tgt_tokens, p.tgt_tags, p.tgt_text)
        assert [(s["start"], s["end"], s["label"]) for s in spans] == sorted(p.tgt_word_spans)
    # offsets into a text with extra spaces
    assert word_spans(["Anna", "ran"], ["B-PER", "O"], "  Anna  ran") == [{"start": 2, "end": 6, "label": "PER"}]
    assert word_spans([], [], "") == []


# --- tokenization: the predictor's encoding is what finetune writes ---------------------
def test_encode_words_matches_finetune_ner_output(tmp_path, sentencepiece_model, tiny_pairs):
    pairs = tiny_pairs[:12]
    ids = [f"t{k}" for k in range(len(pairs))]
    data = jobs.save_tagged(ids, [p.tgt_tokens for p in pairs], [p.tgt_tags for p in pairs], NAMES, tmp_path / "in")
    jobs.finetune_ner(data, tmp_path / "ft", SPM_PATH)
    ds, names = jobs.finetune_split(tmp_path / "ft")
    assert names == NAMES
    from_cli = Encoded.from_dataset(ds)
    order = {i: k for k, i in enumerate(from_cli.example_ids)}
    assert sorted(order) == sorted(ids)  # one window per short sentence
    mine = encoded_gold(sentencepiece_model, pairs)
    for k, i in enumerate(ids):
        r = order[i]
        n = int(from_cli.lengths[r])
        assert n == mine.lengths[k]
        assert from_cli.input_ids[r, :n].tolist() == mine.input_ids[k, :n].tolist()
        assert from_cli.labels[r, :n].tolist() == mine.labels[k, :n].tolist()
        assert from_cli.word_ids[r, :n].tolist() == mine.word_ids[k, :n].tolist()


def test_encode_words_marks_first_pieces(sentencepiece_model):
    enc = encode_words(sentencepiece_model, [["Pufaikkero", "zavezni", "."], []])
    first = enc.labels[0] != IGNORE_INDEX
    assert first.sum() == 3 and enc.input_ids[0, 0] == sentencepiece_model.bos_id()
    assert enc.word_ids[0][first].tolist() == [0, 1, 2]
    assert enc.lengths.tolist()[1] == 2  # an empty sentence is [bos] [eos]


# --- the tagger ----------------------------------------------------------------------
def test_tagger_learns_its_training_data_and_is_seeded(sentencepiece_model, tiny_pairs):
    data = encoded_gold(sentencepiece_model, tiny_pairs)
    gold = [p.tgt_tags for p in tiny_pairs]
    ids = data.example_ids
    cfg = tiny_config()
    torch.manual_seed(1)
    untrained = Tagger(cfg).eval()
    model, stats = train_tagger(data, cfg, seed=1, device="cpu")
    assert stats["epoch_losses"][-1] < stats["epoch_losses"][0] / 3
    fitted = evaluate_tagger(model, data, ids, gold, NAMES)["f1"]
    assert fitted > 0.9 > evaluate_tagger(untrained, data, ids, gold, NAMES)["f1"] + 0.5
    short = tiny_config(epochs=2)  # seeding shows after a few steps already
    one, again, other = (train_tagger(data, short, seed=s, device="cpu")[0] for s in (1, 1, 2))
    same = lambda a, b: all(np.array_equal(x.detach().numpy(), y.detach().numpy())
                            for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert same(one, again) and not same(one, other)


def test_predictions_merge_windows_by_word_index():
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids, lengths):
            # label = the piece id, so the prediction shows which window position was read
            return torch.nn.functional.one_hot(ids % 9, 9).float() + 0 * self.w

    # one example cut into two windows: words 0-1 labelled in the first, word 2 in the second
    enc = Encoded.from_columns(input_ids=[[1, 10, 11, 2, 3], [1, 12, 13, 2, 3]], attention_mask=[[1, 1, 1, 1, 0]] * 2,
                               labels=[[-100, 0, 0, -100, -100], [-100, -100, 0, -100, -100]],
                               word_ids=[[-1, 0, 1, -1, -1], [-1, 1, 2, -1, -1]], example_ids=["a", "a"])
    assert predict_word_tags(Constant(), enc) == {"a": {0: 10 % 9, 1: 11 % 9, 2: 13 % 9}}


# --- translate-test predictor ----------------------------------------------------------
def test_predictor_tags_source_texts_with_a_saved_tagger(tmp_path, monkeypatch, sentencepiece_model, tiny_pairs):
    en = [p.src_tokens for p in tiny_pairs]
    data = encode_words(sentencepiece_model, en, [[INDEX[t] for t in p.src_tags] for p in tiny_pairs])
    model, _ = train_tagger(data, tiny_config(), seed=3, device="cpu")
    ckpt = save_tagger(model, tmp_path / "en.pt", NAMES)
    loaded, names = load_tagger(ckpt, device="cpu")
    assert names == NAMES
    assert predict_word_tags(loaded, data) == predict_word_tags(model, data)
    texts = [p.src_text for p in tiny_pairs]
    spans = tag_texts(texts, str(ckpt), str(SPM_PATH))
    pred = [[(s["start"], s["end"], s["label"]) for s in ss] for ss in spans]
    gold = [sorted(p.src_spans) for p in tiny_pairs]
    hits = sum(len(set(a) & set(b)) for a, b in zip(pred, gold))
    assert hits / sum(map(len, gold)) > 0.9  # its own training sentences
    for text, ss in zip(texts, spans):  # spans sit on word boundaries of the text
        for s in ss:
            assert (s["start"] == 0 or text[s["start"] - 1] == " ") and (s["end"] == len(text) or text[s["end"]] == " ")
    monkeypatch.setenv(TAGGER_ENV, str(ckpt))
    monkeypatch.setenv(SPM_ENV, str(SPM_PATH))
    assert tag_source(texts[:5]) == spans[:5]
    monkeypatch.delenv(TAGGER_ENV)
    with pytest.raises(RuntimeError, match=TAGGER_ENV):
        tag_source(texts[:1])


# --- intrinsic projection score ----------------------------------------------------------
def test_intrinsic_f1_counts_rejections_and_wrong_spans(tiny_pairs):
    pairs = [p for p in tiny_pairs if p.tgt_word_spans][:10]
    ids = [str(k) for k in range(len(pairs))]
    perfect = {i: (p.tgt_tokens, p.tgt_tags) for i, p in zip(ids, pairs)}
    assert intrinsic_f1(perfect, pairs, ids)["f1"] == 1.0
    missing = dict(perfect)
    del missing[ids[0]]  # a rejected sentence: its entities are missed
    r = intrinsic_f1(missing, pairs, ids)
    n_gold = sum(len(p.tgt_word_spans) for p in pairs)
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(1 - len(pairs[0].tgt_word_spans) / n_gold)
    none = {i: (toks, ["O"] * len(tags)) for i, (toks, tags) in perfect.items()}
    assert intrinsic_f1(none, pairs, ids)["f1"] == 0.0


def test_reverse_model_is_shipped():
    assert (REVERSE_MODEL / "model.bin").exists() and (REVERSE_MODEL / "spm.model").exists()
