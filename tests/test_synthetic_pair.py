"""The synthetic en->xx pair (gold spans by construction) and the shipped reference model."""

from __future__ import annotations

import json

import ctranslate2
import pytest
import sentencepiece as spm
from bench import synthetic_pair as sp

MODEL_DIR = sp.reference_model_dir()
SUFFIXES = {""} | {s for c in sp.CASES.values() for s in (c, "e" + c)}


@pytest.fixture(scope="module")
def train_pairs():
    return sp.generate(1500, seed=11, split="train")


@pytest.fixture(scope="module")
def test_pairs():
    return sp.generate(1500, seed=11, split="test")


def test_deterministic_and_seeded():
    a = [p.to_dict() for p in sp.generate(200, seed=3, split="train")]
    b = [p.to_dict() for p in sp.generate(200, seed=3, split="train")]
    c = [p.to_dict() for p in sp.generate(200, seed=4, split="train")]
    assert a == b
    assert a != c
    first = sp.generate(5, 3, "train")[0]  # pinned: the language must not drift under a shipped model
    assert first.src_text == "Harerd visits Phaistem Puphaick ."
    assert first.tgt_text == "Harerdeka Faistem Pufaikkero zavezni ."
    assert first.tgt_spans == [(0, 6, "PER"), (10, 25, "PER")]
    with pytest.raises(ValueError):
        sp.generate(1, 0, "nope")


def test_source_spans_tags_and_text(train_pairs):
    for p in train_pairs:
        assert p.src_text == " ".join(p.src_tokens)
        assert len(p.src_tags) == len(p.src_tokens)
        assert sp.tags_from_spans(p.src_text, p.src_spans) == p.src_tags
        starts = sorted(s for s, _, _ in p.src_spans)
        assert starts == [s for s, _, _ in p.src_spans]  # entity index = source order
        for (s, e, lab), (ts, te, tl), (ws, we, wl) in zip(p.src_spans, p.tgt_spans, p.tgt_word_spans):
            assert lab == tl == wl and lab in sp.LABELS
            assert sp.word_span(p.src_text, s, e) == (s, e)  # source spans are whole words
            assert (ws, we) == sp.word_span(p.tgt_text, ts, te)
            assert ws == ts and we >= te
            # what a word span adds to the strict span is exactly one glued case suffix
            assert p.tgt_text[te:we] in SUFFIXES
            assert p.tgt_text[ts:te] == p.tgt_text[ts:te].strip() and p.tgt_text[ts].isupper()


def test_target_surface_of_entities(train_pairs):
    checked = 0
    for p in train_pairs:
        for (s, e, lab), (ts, te, _) in zip(p.src_spans, p.tgt_spans):
            src = p.src_text[s:e]
            if lab == "PER":  # names are respelled word by word, nothing else
                assert p.tgt_text[ts:te] == " ".join(sp.transliterate(w) for w in src.split())
                checked += 1
            elif lab == "ORG" and src.split()[0] in sp.ORG_OF_HEADS and " of " in src:
                head, _, name = src.split()
                assert p.tgt_text[ts:te] == f"{sp.transliterate(name)} {sp.LEX[head.lower()].capitalize()}"
                checked += 1
    assert checked > 500


def test_glued_suffixes_and_transliteration_present(train_pairs):
    ents = [(p, i) for p in train_pairs for i in range(len(p.src_spans))]
    glued = [(p, i) for p, i in ents if p.tgt_word_spans[i][1] > p.tgt_spans[i][1]]
    assert len(glued) / len(ents) > 0.4
    p, i = glued[0]
    assert " " not in p.tgt_text[p.tgt_spans[i][1] - 1: p.tgt_word_spans[i][1]]  # edge inside a word
    respelled = [(p, i) for p, i in ents if p.tgt_text[slice(*p.tgt_spans[i][:2])] != p.src_text[slice(*p.src_spans[i][:2])]]
    assert len(respelled) / len(ents) > 0.3
    assert sp.transliterate("Wichard") == "Vitsard" and sp.transliterate("Maria") == "Maria"
    assert sp.case_suffix("Maria", "nom") == "ka" and sp.case_suffix("Berg", "nom") == "eka"
    multi = [p for p in train_pairs if any(len(p.src_text[s:e].split()) > 1 for s, e, _ in p.src_spans)]
    assert len(multi) > 300
    assert {lab for p in train_pairs for _, _, lab in p.src_spans} == set(sp.LABELS)


def test_splits_disjoint(train_pairs, test_pairs):
    held = set(sp.HELD_OUT_NAMES)
    assert held and not held & set(sp.TRAIN_NAMES)
    train_words = {w for p in train_pairs for w in p.src_tokens}
    assert not {w for w in train_words if w in held}
    for p in test_pairs:  # every held-out sentence carries a held-out name word
        assert p.held_out and any(w in held or w[:-1] in held or w[:-3] in held for w in p.src_tokens)
    assert not {p.src_text for p in train_pairs} & {p.src_text for p in test_pairs}
    dev = sp.generate(300, 11, "dev")
    assert not {p.src_text for p in dev} & {p.src_text for p in test_pairs[:300]}


def test_marked_and_parse_markers(train_pairs):
    for p in train_pairs[:300]:
        for i, (ws, we, _) in enumerate(p.tgt_word_spans):
            ms, mt = sp.marked(p, i)
            assert ms.count("[ ") == 1 and mt.count(" ]") == 1
            plain, spans = sp.parse_markers(ms)
            assert plain == p.src_text and spans == [p.src_spans[i][:2]]
            plain, spans = sp.parse_markers(mt)
            assert plain == p.tgt_text and spans == [(ws, we)]
    with pytest.raises(ValueError):
        sp.parse_markers("a [ b [ c ] ]")
    with pytest.raises(ValueError):
        sp.parse_markers("a [ b")


def test_marked_all(train_pairs):
    multi = 0
    for p in train_pairs[:300]:
        ms, mt = sp.marked_all(p)
        assert ms.count("[ ") == len(p.src_spans) and mt.count(" ]") == len(p.tgt_word_spans)
        plain, spans = sp.parse_markers(ms)
        assert plain == p.src_text and spans == [s[:2] for s in p.src_spans]
        plain, spans = sp.parse_markers(mt)
        # target order differs from source order (SOV): compare as sets of word spans
        assert plain == p.tgt_text and sorted(spans) == sorted(s[:2] for s in p.tgt_word_spans)
        multi += len(p.src_spans) > 1
        if len(p.src_spans) == 1:
            assert (ms, mt) == sp.marked(p, 0)
    assert multi > 50
    p = next(p for p in train_pairs if len(p.src_spans) >= 2)
    ms, mt = sp.marked_all(p)
    for i, (s, e, _) in enumerate(p.tgt_word_spans):  # every entity keeps its suffix inside its brackets
        assert f"[ {p.tgt_text[s:e]} ]" in mt


def test_ner_files(tmp_path, test_pairs):
    pairs = test_pairs[:20]
    path = sp.write_jsonl(pairs, tmp_path / "ner.jsonl", with_target=True)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 20
    for row, p in zip(rows, pairs):
        assert row["text"] == p.src_text
        assert [row["text"][s["start"]:s["end"]] for s in row["spans"]] == [p.src_text[s:e] for s, e, _ in p.src_spans]
        assert [(s["start"], s["end"], s["label"]) for s in row["tgt_word_spans"]] == p.tgt_word_spans
    conll = sp.write_conll(pairs, tmp_path / "ner.conll").read_text().split("\n\n")
    assert conll[0] == "-DOCSTART- O"
    first = [line.split(" ") for line in conll[1].splitlines()]
    assert [t for t, _ in first] == pairs[0].src_tokens and [g for _, g in first] == pairs[0].src_tags
    tgt = sp.write_conll(pairs, tmp_path / "xx.conll", side="tgt", docstart=False).read_text().split("\n\n")
    assert [line.split(" ")[0] for line in tgt[0].splitlines()] == pairs[0].tgt_text.split(" ")


# --- the shipped reference model ----------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    for name in ("model.bin", "config.json", "shared_vocabulary.json", "spm.model", "MODEL_CARD.md"):
        assert (MODEL_DIR / name).is_file(), f"missing {name} in {MODEL_DIR}"
    tr = ctranslate2.Translator(str(MODEL_DIR), device="cpu", compute_type="int8", intra_threads=1)
    return tr, spm.SentencePieceProcessor(model_file=str(MODEL_DIR / "spm.model"))


def test_reference_model_translates_held_out_and_carries_markers(model):
    tr, proc = model
    assert proc.piece_to_id("▁[") != proc.unk_id() and proc.piece_to_id("▁]") != proc.unk_id()
    pairs = sp.generate(60, seed=5, split="test")
    enc = lambda texts: [proc.encode(t, out_type=str) for t in texts]
    hyps = [proc.decode(r.hypotheses[0]) for r in tr.translate_batch(enc([p.src_text for p in pairs]), beam_size=2)]
    exact = sum(h == p.tgt_text for h, p in zip(hyps, pairs)) / len(pairs)
    assert exact >= 0.8, list(zip(hyps, [p.tgt_text for p in pairs]))[:5]
    items = [(p, 0) for p in pairs if p.src_spans]
    marked = [sp.marked(p, i) for p, i in items]
    out = [proc.decode(r.hypotheses[0]) for r in tr.translate_batch(enc([m for m, _ in marked]), beam_size=2)]
    right = 0
    for (p, i), h in zip(items, out):
        try:
            plain, spans = sp.parse_markers(h)
        except ValueError:
            continue
        right += spans == [p.tgt_word_spans[i][:2]] and plain == p.tgt_text
    assert right / len(items) >= 0.8


def test_reference_model_scores_and_attention(model):
    tr, proc = model
    p = sp.generate(1, seed=5, split="test")[0]
    src = proc.encode(p.src_text, out_type=str)
    good, bad = proc.encode(p.tgt_text, out_type=str), proc.encode("nohoka gili .", out_type=str)
    s_good, s_bad = tr.score_batch([src, src], [good, bad])
    assert len(s_good.log_probs) == len(good) + 1  # + </s>
    assert sum(s_good.log_probs) > sum(s_bad.log_probs)
    r = tr.translate_batch([src], beam_size=1, return_attention=True)[0]
    att = r.attention[0]
    assert len(att) == len(r.hypotheses[0]) and all(len(row) == len(src) for row in att)
    assert all(abs(sum(row) - 1.0) < 1e-3 for row in att)
