"""Fine-tuning stage core: tokenizer, fertility, NER windows, packing, language mixing."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from xlcorpus.transforms.stages.finetune.common import IGNORE_INDEX
from xlcorpus.transforms.stages.finetune.mix import (
    explicit_weights,
    repeat_counts,
    sample_plan,
    select_rows,
    temperature_weights,
)
from xlcorpus.transforms.stages.finetune.pack import pack, pack_by_language, packing_efficiency
from xlcorpus.transforms.stages.finetune.tokenizer import fertility_report, train_tokenizer

# Three small "languages", two Latin and one Cyrillic; every subject/verb/object
# combination is a distinct sentence (1000 per language).
WORDS = {
    "eng": (["the farmer", "my sister", "a teacher", "the old man", "our neighbour", "the child", "a doctor",
             "the fisherman", "his brother", "the driver"],
            ["sells", "carries", "finds", "buys", "cooks", "washes", "brings", "paints", "repairs", "counts"],
            ["the red boat", "fresh bread", "a heavy basket", "the new house", "three goats", "clean water",
             "a small radio", "the long rope", "green beans", "the wooden door"]),
    "swh": (["mkulima", "dada yangu", "mwalimu", "mzee", "jirani yetu", "mtoto", "daktari", "mvuvi",
             "kaka yake", "dereva"],
            ["anauza", "anabeba", "anapata", "ananunua", "anapika", "anaosha", "analeta", "anapaka",
             "anatengeneza", "anahesabu"],
            ["mashua nyekundu", "mkate mpya", "kikapu kizito", "nyumba mpya", "mbuzi watatu", "maji safi",
             "redio ndogo", "kamba ndefu", "maharagwe mabichi", "mlango wa mbao"]),
    "rus": (["фермер", "моя сестра", "учитель", "старик", "наш сосед", "ребёнок", "врач", "рыбак",
             "его брат", "водитель"],
            ["продаёт", "несёт", "находит", "покупает", "готовит", "моет", "приносит", "красит",
             "чинит", "считает"],
            ["красную лодку", "свежий хлеб", "тяжёлую корзину", "новый дом", "трёх коз", "чистую воду",
             "маленькое радио", "длинную верёвку", "зелёную фасоль", "деревянную дверь"]),
}
GREEK = ["ο αγρότης πουλάει φρέσκο ψωμί", "η αδελφή μου φέρνει καθαρό νερό", "ο γιατρός βρίσκει τη βάρκα"]
HINDI = "किसान ताज़ी रोटी बेचता है"


def sentences(lang: str) -> list[str]:
    s, v, o = WORDS[lang]
    return [f"{a} {b} {c}" for a, b, c in itertools.product(s, v, o)]


def corpus() -> list[str]:
    lines = [line for lang in WORDS for line in sentences(lang)] + GREEK  # Greek: three lines only
    random.Random(1).shuffle(lines)
    return lines


@pytest.fixture(scope="module")
def sp_model(tmp_path_factory) -> str:
    return train_tokenizer(corpus(), str(tmp_path_factory.mktemp("spm") / "tok"), vocab_size=200,
                           character_coverage=1.0)


@pytest.fixture(scope="module")
def sp(sp_model) -> "spm.SentencePieceProcessor":
    return spm.SentencePieceProcessor(model_file=sp_model)


# --- tokenizer ------------------------------------------------------------------

def test_tokenizer_round_trip(sp):
    assert sp.vocab_size() == 200
    lines = [sentences(lang)[i] for lang in WORDS for i in (0, 123, 999)]
    encoded = sp.encode(lines)
    assert sp.decode(encoded) == lines
    assert all(sp.unk_id() not in ids for ids in encoded)


def test_tokenizer_deterministic(tmp_path):
    prefix = str(tmp_path / "tok")
    digests = []
    for _ in range(2):
        path = train_tokenizer(corpus(), prefix, vocab_size=120, sample_lines=1500, seed=7)
        digests.append(Path(path).read_bytes())
        Path(path).unlink()
    assert digests[0] == digests[1]
    # a different seed samples different lines: a different model
    other = Path(train_tokenizer(corpus(), prefix, vocab_size=120, sample_lines=1500, seed=8)).read_bytes()
    assert other != digests[0]


def test_tokenizer_tiny_corpus(tmp_path):
    lines = ["a tiny corpus", "with few lines"] * 5
    with pytest.raises(ValueError, match="smaller vocab_size"):
        train_tokenizer(lines, str(tmp_path / "t"), vocab_size=5000)
    path = train_tokenizer(lines, str(tmp_path / "t"), vocab_size=5000, hard_vocab_limit=False)
    assert spm.SentencePieceProcessor(model_file=path).vocab_size() < 5000
    with pytest.raises(ValueError, match="no non-empty lines"):
        train_tokenizer(["", "  "], str(tmp_path / "e"))


def test_fertility_higher_for_barely_seen_script(sp):
    texts = sentences("eng")[:50] + sentences("rus")[:50] + GREEK + [HINDI]
    langs = ["eng"] * 50 + ["rus"] * 50 + ["ell"] * len(GREEK) + ["hin"]
    rep = fertility_report(texts, langs, sp)
    assert set(rep) == {"eng", "rus", "ell", "hin"}
    assert rep["eng"]["words"] == sum(len(t.split()) for t in texts[:50])
    assert rep["eng"]["fertility"] == pytest.approx(rep["eng"]["pieces"] / rep["eng"]["words"])
    # Greek (three training lines) comes apart into characters; seen languages do not
    assert rep["ell"]["fertility"] > 1.5 * rep["eng"]["fertility"]
    assert rep["ell"]["fertility"] > rep["rus"]["fertility"]
    assert rep["eng"]["unk_rate"] == 0.0 and rep["ell"]["unk_rate"] == 0.0
    assert rep["hin"]["unk_rate"] > 0.0  # a script the model never saw


# --- NER alignment -----------------------------------------------------------------

CLS, SEP, PAD = 1, 2, 0


def ner_examples(n: int, seed: int = 0):
    rng = random.Random(seed)
    vocab = sorted({w for lang in WORDS for part in WORDS[lang] for phrase in part for w in phrase.split()})
    words, labels = [], []
    for i in range(n):
        ws = [rng.choice(vocab) for _ in range(rng.randint(1, 70))]
        if i % 7 == 3:  # a word far longer than a window: must be cut, not dropped
            ws.insert(rng.randrange(len(ws) + 1), "".join(rng.choice("qxzjvkw") for _ in range(60)))
        words.append(ws)
        labels.append([rng.randrange(9) for _ in ws])
    return words, labels


@pytest.mark.parametrize("pad_id", [None, PAD])
def test_align_ner_windows(sp, pad_id):
    from xlcorpus.transforms.stages.finetune.ner import align_ner

    max_length, stride = 24, 6
    cap = max_length - 2
    words, labels = ner_examples(120)
    out = align_ner(words, labels, sp, max_length=max_length, stride=stride, cls_id=CLS, sep_id=SEP, pad_id=pad_id)
    n_rows = len(out["example"])
    assert all(len(out[c]) == n_rows for c in out)
    assert max(Counter(out["example"]).values()) > 3  # long examples really were split
    pieces = [sp.encode(ws) for ws in words]
    labelled: dict[tuple[int, int], int] = Counter()
    seen_last: set[int] = set()
    prev = None
    for ex, win, ids, mask, labs, wids in zip(*(out[c] for c in ("example", "window", "input_ids",
                                                                 "attention_mask", "labels", "word_ids"))):
        assert win == (prev[1] + 1 if prev and prev[0] == ex else 0)
        assert len(ids) == len(mask) == len(labs) == len(wids) <= max_length
        n = sum(mask)
        assert mask == [1] * n + [0] * (len(mask) - n)
        assert (len(ids) == max_length) if pad_id is not None else (n == len(ids))
        assert ids[0] == CLS and ids[n - 1] == SEP and all(t == PAD for t in ids[n:])
        assert labs[0] == IGNORE_INDEX and all(l == IGNORE_INDEX for l in labs[n - 1:])
        body = list(zip(ids[1:n - 1], wids[1:n - 1]))
        for pos, (tok, w) in enumerate(body, start=1):
            if labs[pos] != IGNORE_INDEX:
                labelled[ex, w] += 1
                assert labs[pos] == labels[ex][w]  # the word's own label ...
                assert tok == pieces[ex][w][0]  # ... on its first piece
                assert pos == 1 or wids[pos - 1] != w  # and that piece starts the word here
        # words that fit in a window are never split across windows
        for w, group in itertools.groupby(body, key=lambda t: t[1]):
            if len(pieces[ex][w]) <= cap and w not in (body[0][1], body[-1][1]):
                assert [t for t, _ in group] == pieces[ex][w]
        for w in {w for _, w in body}:
            if len(pieces[ex][w]) <= cap:
                assert [t for t, ww in body if ww == w] == pieces[ex][w]
        # consecutive windows overlap by at most `stride` pieces
        if prev and prev[0] == ex:
            overlap = sum(1 for _, w in body if w in prev[2] and len(pieces[ex][w]) <= cap)  # cut words: no repeats
            assert overlap <= stride
        seen_last.update([ex] if body and body[-1] == (pieces[ex][-1][-1], len(words[ex]) - 1) else [])
        prev = (ex, win, {w for _, w in body})
    # every word of every example is labelled exactly once across its windows
    assert labelled == {(ex, w): 1 for ex, ws in enumerate(words) for w in range(len(ws))}
    assert seen_last == set(range(len(words)))  # nothing truncated at the end


def test_align_ner_short_and_errors(sp):
    from xlcorpus.transforms.stages.finetune.ner import align_ner

    out = align_ner([["the", "farmer"], []], [[3, 4], []], sp, max_length=32, stride=4, cls_id=CLS, sep_id=SEP)
    assert out["example"] == [0, 1] and out["window"] == [0, 0]
    first = sp.encode(["the", "farmer"])
    assert out["input_ids"][0] == [CLS] + first[0] + first[1] + [SEP]
    assert out["labels"][0] == ([IGNORE_INDEX, 3] + [IGNORE_INDEX] * (len(first[0]) - 1) + [4]
                                + [IGNORE_INDEX] * (len(first[1]) - 1) + [IGNORE_INDEX])
    assert out["input_ids"][1] == [CLS, SEP]
    with pytest.raises(ValueError, match="stride"):
        align_ner([["a"]], [[0]], sp, max_length=8, stride=6, cls_id=CLS, sep_id=SEP)
    with pytest.raises(ValueError, match="labels"):
        align_ner([["a", "b"]], [[0]], sp, max_length=8, stride=2, cls_id=CLS, sep_id=SEP)


# --- packing ------------------------------------------------------------------------

def random_docs(n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 8000) for _ in range(rng.choice([0, 5, 40, 120, 300, 900]) + rng.randrange(20))]
            for _ in range(n)]


def test_pack_keeps_every_token_in_order():
    docs = random_docs(3000) + [[]]
    seq_len, sep, pad = 512, 2, 0
    packed = pack(docs, seq_len, sep, pad)
    assert packed.input_ids.shape == (len(packed), seq_len) and packed.input_ids.dtype == np.int32
    real = packed.attention_mask.astype(bool)
    assert real[:-1].all()  # only the last sequence is padded
    assert (packed.input_ids[~real] == pad).all()
    expected = [t for doc in (d for d in docs if d) for t in itertools.chain([sep], doc)][1:]
    assert packed.input_ids[real].tolist() == expected
    assert packing_efficiency(packed) >= 0.98
    assert packing_efficiency(list(packed)) == pytest.approx(packing_efficiency(packed))
    assert packed.to_batch().num_rows == len(packed)


def test_pack_small_cases():
    p = pack([[5, 6, 7], [8], [9, 10, 11, 12, 13]], seq_len=4, sep_id=2, pad_id=0)
    assert list(p) == [([5, 6, 7, 2], [1, 1, 1, 1]), ([8, 2, 9, 10], [1, 1, 1, 1]), ([11, 12, 13, 0], [1, 1, 1, 0])]
    assert packing_efficiency(p) == pytest.approx(11 / 12)
    assert len(pack([], 8, 2, 0)) == 0


def test_pack_by_language_never_mixes():
    ids = {"swh": [[10, 11]] * 50, "eng": [[20, 21, 22]] * 40}
    out = pack_by_language(ids, seq_len=16, sep_id=2, pad_id=0)
    assert list(out) == ["eng", "swh"]
    assert set(out["eng"].input_ids.ravel()) <= {20, 21, 22, 2, 0}
    assert set(out["swh"].input_ids.ravel()) <= {10, 11, 2, 0}
    assert int(out["swh"].attention_mask.sum()) == 50 * 2 + 49


# --- language mixing ------------------------------------------------------------------

COUNTS = {"eng": 1_000_000, "swh": 10_000, "yor": 100, "empty": 0}


def test_temperature_weights():
    prop = temperature_weights(COUNTS, 1.0)
    total = sum(COUNTS.values())
    assert all(prop[l] == pytest.approx(n / total) for l, n in COUNTS.items())
    uni = temperature_weights(COUNTS, 0.0)
    assert uni == pytest.approx({"eng": 1 / 3, "swh": 1 / 3, "yor": 1 / 3, "empty": 0.0})
    half = temperature_weights(COUNTS, 0.5)
    z = 1000 + 100 + 10
    assert half == pytest.approx({"eng": 1000 / z, "swh": 100 / z, "yor": 10 / z, "empty": 0.0})
    assert sum(temperature_weights(COUNTS, 0.3).values()) == pytest.approx(1.0)
    assert temperature_weights(COUNTS, 500.0)["eng"] == pytest.approx(1.0)  # no overflow
    assert temperature_weights(COUNTS, 0.3)["yor"] > prop["yor"]  # low alpha lifts the small language
    with pytest.raises(ValueError):
        temperature_weights(COUNTS, -1.0)


def test_explicit_weights():
    assert explicit_weights({"a": 3, "b": 1}) == {"a": 0.75, "b": 0.25}
    with pytest.raises(ValueError):
        explicit_weights({"a": 0, "b": 0})


def test_sample_plan():
    w = temperature_weights(COUNTS, 0.3)
    plan = sample_plan(COUNTS, w, total=100_000, seed=0)
    assert sum(plan.values()) == 100_000
    assert plan["empty"] == 0
    assert plan["yor"] > COUNTS["yor"]  # up-sampled: rows will repeat
    assert all(abs(plan[l] - 100_000 * w[l]) < 1 for l in COUNTS)
    assert sample_plan(COUNTS, w, total=100_000, seed=0) == plan
    assert sum(sample_plan(COUNTS, w).values()) == sum(COUNTS.values())
    # ties in rounding are broken by the seed, and deterministically so
    even = {f"l{i}": 10 for i in range(7)}
    plans = {s: sample_plan(even, explicit_weights({l: 1 for l in even}), total=10, seed=s) for s in range(6)}
    assert all(sum(p.values()) == 10 and set(p.values()) <= {1, 2} for p in plans.values())
    assert len({tuple(sorted(p.items())) for p in plans.values()}) > 1
    with pytest.raises(ValueError, match="no rows"):
        sample_plan(COUNTS, {"empty": 1.0})


def test_select_rows():
    ids = [f"doc-{i}" for i in range(1000)]
    pick = select_rows(ids, "swh", 300, seed=3)
    assert len(pick) == 300 and len(set(pick.tolist())) == 300 and (np.diff(pick) > 0).all()
    assert select_rows(ids, "swh", 300, seed=3).tolist() == pick.tolist()
    assert select_rows(ids, "swh", 300, seed=4).tolist() != pick.tolist()
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    chosen = {ids[i] for i in pick}
    assert {shuffled[i] for i in select_rows(shuffled, "swh", 300, seed=3)} == chosen  # order does not matter
    up = select_rows(ids, "swh", 2500, seed=3)
    copies = Counter(up.tolist())
    assert len(up) == 2500 and set(copies.values()) == {2, 3} and sum(c == 3 for c in copies.values()) == 500
    assert select_rows([], "swh", 0).size == 0
    rc = repeat_counts(ids, "swh", 2.5, seed=3)
    assert set(rc.tolist()) == {2, 3} and abs(int(rc.sum()) - 2500) < 100


def test_word_counts_are_str_split_words(sp):
    """Leading, trailing and repeated whitespace of any kind makes no empty words (Arrow's
    utf8_split_whitespace would count them)."""
    from xlcorpus.transforms.stages.finetune.tokenizer import fertility_report, word_counts

    texts = [" a  b ", "\u3000x\u00a0y\t", "", None, "one"]
    assert word_counts(texts).tolist() == [2, 2, 0, 0, 1]
    assert fertility_report(texts[:3], ["x"] * 3, sp)["x"]["words"] == 4


# --- the stages, without Beam -----------------------------------------------------------
def _rows(texts: list[str], langs: list[str], **extra) -> "pa.RecordBatch":
    import pyarrow as pa

    n = len(texts)
    return pa.RecordBatch.from_pydict({"id": [f"r{i}" for i in range(n)], "text": texts, "source": ["s"] * n,
                                       "line": list(range(1, n + 1)), "offset": list(range(n)), "meta": [None] * n,
                                       "lang": langs, "split": ["train"] * n, **extra})


def test_pack_sequences_stage_packs_one_batch_like_pack_by_language(sp_model):
    from xlcorpus.transforms.stages.finetune.options import FinetuneOptions
    from xlcorpus.transforms.stages.finetune.stage import PackSequences

    texts = sentences("eng")[:20] + [""] + sentences("rus")[:5]
    langs = ["eng"] * 21 + ["rus"] * 5
    stage = PackSequences(FinetuneOptions(seq_len=16), tokenizer=sp_model)
    stage.check()
    stage.setup()
    kept, rejected, dead, stats = stage.process(_rows(texts, langs))
    assert rejected.column("id").to_pylist() == ["r20"] and rejected.column("reason").to_pylist() == ["no_tokens"]
    assert dead is None
    s = stage.special
    expected = pack_by_language({"eng": stage.sp.encode(texts[:20]), "rus": stage.sp.encode(texts[21:])}, 16,
                                s.eos, s.pad)
    for lang, packed in expected.items():
        rows = [i for i, lg in enumerate(kept.column("lang").to_pylist()) if lg == lang]
        got = kept.take(rows)
        assert np.asarray(got.column("input_ids").values).reshape(-1, 16).tolist() == packed.input_ids.tolist()
        assert np.asarray(got.column("attention_mask").values).reshape(-1, 16).tolist() == \
            packed.attention_mask.tolist()
        assert stats[f"sequences|{lang}"] == len(packed)
        assert stats[f"tokens|{lang}"] == int(packed.attention_mask.sum())
    assert stats["documents|eng"] == 20 and stats["documents|rus"] == 5


def test_pack_sequences_interleaved_languages_and_splits_pack_per_key_in_input_order(sp_model):
    """Rows of two languages and two splits interleaved, with empty and unknown-character
    documents among them: each (split, language) packs its documents in input order,
    the counters count every row, and the rejected rows keep the batch's order."""
    from xlcorpus.transforms.stages.finetune.options import FinetuneOptions
    from xlcorpus.transforms.stages.finetune.stage import PackSequences

    rng = random.Random(7)
    texts = [rng.choice(sentences(lang)) for lang in ["eng", "rus"] * 30]
    langs = ["eng", "rus"] * 30
    splits = [rng.choice(["train", "test"]) for _ in texts]
    for i in (3, 17, 40):
        texts[i] = ""
    texts[8] = HINDI  # no Devanagari in the tokenizer: unknown pieces
    stage = PackSequences(FinetuneOptions(seq_len=16), tokenizer=sp_model)
    stage.setup()
    packer = stage.bundle()
    rows, rejected = stage.pack_batch(_rows(texts, langs, split=splits), packer)
    assert rejected.column("id").to_pylist() == ["r3", "r17", "r40"]
    s = stage.special
    for split in ("train", "test"):
        for lang in ("eng", "rus"):
            docs = [stage.sp.encode(t) for t, lg, sp_ in zip(texts, langs, splits) if lg == lang and sp_ == split]
            stream = [piece for ids in docs if ids for piece in ids + [s.eos]][:-1]
            full = len(stream) // 16 * 16
            got = [b for b in rows if b.column("lang")[0].as_py() == lang and b.column("split")[0].as_py() == split]
            ids = np.concatenate([np.asarray(b.column("input_ids").values) for b in got]) if got else np.zeros(0)
            assert ids.tolist() == stream[:full]
            assert packer.packers[(split, lang)].tail().tolist() == stream[full:]
    encoded = stage.sp.encode(texts)
    assert packer.stats["pieces|eng"] == sum(len(e) for e, lg in zip(encoded, langs) if lg == "eng")
    assert packer.stats["unk|eng"] == sum(e.count(s.unk) for e, lg in zip(encoded, langs) if lg == "eng") > 0
    assert packer.stats["words|rus"] == sum(len(t.split()) for t, lg in zip(texts, langs) if lg == "rus")
    assert packer.stats["documents|eng"] + packer.stats["documents|rus"] == 57


def test_align_ner_stage_windows_and_bad_examples(sp_model):
    from xlcorpus.transforms.stages.finetune.options import FinetuneOptions
    from xlcorpus.transforms.stages.finetune.stage import AlignNer

    words = [s.split() for s in sentences("eng")[:3]]
    stage = AlignNer(FinetuneOptions(task="ner", max_length=8, stride=2, label_names=["O", "X"]),
                     tokenizer=sp_model)
    stage.setup()
    batch = _rows([" ".join(w) for w in words], ["eng"] * 3, tokens=words, ner_tags=[[0] * len(w) for w in words])
    kept, rejected, dead, stats = stage.process(batch)
    assert rejected is None and dead is None and kept.num_rows > 3
    assert stats["documents|eng"] == 3 and stats["sequences|eng"] == kept.num_rows
    assert stats["words|eng"] == sum(map(len, words))
    bad = _rows(["a b"], ["eng"], tokens=[["a", "b"]], ner_tags=[[0, 2]])
    with pytest.raises(ValueError, match="'ner_tags' holds 2"):
        stage.process(bad)
