"""The fine-tuning job end to end: corpus dataset -> packed LM / NER windows -> torch.

The consumer tests do what a fine-tuning script does: ``load_from_disk(DIR)
.with_format("torch")`` through a DataLoader into a tiny randomly initialised model,
one forward and one backward step on the CPU.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import sentencepiece as spm
import torch

from xlcorpus.pipelines.cli import demo_config_path, main
from xlcorpus.pipelines.config import load_config
from xlcorpus.pipelines.corpus import run_corpus
from xlcorpus.pipelines.finetune import run_finetune
from xlcorpus.pipelines.finetune_config import FinetuneConfig
from xlcorpus.transforms.stages.finetune.common import IGNORE_INDEX
from xlcorpus.transforms.stages.finetune.tokenizer import fertility_report


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """The demo job's dataset: the fine-tuning job's usual input."""
    out = tmp_path_factory.mktemp("corpus") / "demo"
    config = load_config(demo_config_path(), overrides=[f"output.path={out}"])
    run_corpus(config)
    return out


def _finetune(data: dict, out: Path, *beam_args: str) -> dict:
    config = load_config(data={**data, "output": {"path": str(out), "overwrite": True}}, model=FinetuneConfig)
    return run_finetune(config, list(beam_args))


@pytest.fixture(scope="module")
def lm_run(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm") / "lm"
    report = _finetune({"task": "lm", "input": {"dataset": str(corpus_dir)}, "seq_len": 64,
                        "tokenizer": {"vocab_size": 1500}}, out)
    return out, report


def _real_tokens(ds) -> list[int]:
    ids, mask = np.asarray(ds["input_ids"]), np.asarray(ds["attention_mask"]).astype(bool)
    return ids[mask].tolist()


def test_lm_sequences_hold_every_document_and_pad_only_the_last(lm_run, corpus_dir):
    out, report = lm_run
    ds = datasets.load_from_disk(str(out))
    corpus = datasets.load_from_disk(str(corpus_dir))
    assert set(ds) == set(corpus)
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer" / "tokenizer.model"))
    eos = sp.eos_id()
    for split in corpus:
        langs = corpus[split]["lang"]
        got = ds[split]
        assert got.features["input_ids"].length == 64
        assert all(len(x) == 64 for x in got["input_ids"])
        # every piece of every document, once, and no sequence mixes languages
        for lang in set(langs):
            texts = [t for t, lg in zip(corpus[split]["text"], langs) if lg == lang]
            expected = Counter(p for ids in sp.encode(texts) for p in ids)
            rows = got.filter(lambda r: r["lang"] == lang)
            real = Counter(t for t in _real_tokens(rows) if t != eos)
            assert real == expected, (split, lang)
            assert sum(1 for t in _real_tokens(rows) if t == eos) == len(texts) - 1  # one separator between docs
            masks = np.asarray(rows["attention_mask"])
            assert (masks.sum(1) < 64).sum() <= 1  # at most the language's last sequence is padded
        labels, ids, masks = (np.asarray(got[c]) for c in ("labels", "input_ids", "attention_mask"))
        assert (labels[masks == 1] == ids[masks == 1]).all() and (labels[masks == 0] == IGNORE_INDEX).all()
    assert report["accounting"]["balanced"] and report["accounting"]["in"] == corpus.num_rows["train"] + \
        corpus.num_rows["validation"] + corpus.num_rows["test"]
    assert report["packing"]["sequences"] == sum(ds.num_rows.values())


def test_report_fertility_matches_the_tokenizer(lm_run, corpus_dir):
    out, report = lm_run
    corpus = datasets.load_from_disk(str(corpus_dir))
    texts = [t for s in corpus for t in corpus[s]["text"]]
    langs = [lg for s in corpus for lg in corpus[s]["lang"]]
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer" / "tokenizer.model"))
    expected = fertility_report(texts, langs, sp)
    assert report["fertility"].keys() == expected.keys()
    for lang, row in expected.items():
        assert report["fertility"][lang]["pieces"] == row["pieces"]
        assert report["fertility"][lang]["fertility"] == pytest.approx(row["fertility"])
    # the script barrier shows: unsegmented scripts take far more pieces per "word"
    assert report["fertility"]["jpn"]["fertility"] > 3 * report["fertility"]["eng"]["fertility"]
    assert json.loads((out / "report.json").read_text())["fertility"] == report["fertility"]


def test_lm_consumer_forward_backward(lm_run):
    out, _ = lm_run
    ds = datasets.load_from_disk(str(out))["train"].with_format("torch", columns=["input_ids", "attention_mask",
                                                                                   "labels"])
    vocab = spm.SentencePieceProcessor(model_file=str(out / "tokenizer" / "tokenizer.model")).vocab_size()
    torch.manual_seed(0)

    class TinyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, 32)
            layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
            self.body = torch.nn.TransformerEncoder(layer, 1)
            self.head = torch.nn.Linear(32, vocab)

        def forward(self, input_ids, attention_mask, labels):
            n = input_ids.shape[1]
            causal = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
            h = self.body(self.emb(input_ids), mask=causal, src_key_padding_mask=attention_mask == 0)
            logits = self.head(h)[:, :-1]
            return torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), labels[:, 1:].reshape(-1),
                                                     ignore_index=IGNORE_INDEX)

    model = TinyLM()
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True)))
    assert batch["input_ids"].shape == (8, 64) and batch["input_ids"].dtype == torch.int64
    loss = model(**batch)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert model.emb.weight.grad is not None and model.emb.weight.grad.abs().sum() > 0


# --- NER -------------------------------------------------------------------------------
NAMES = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _ner_dataset(path: Path, broken: bool = False) -> Path:
    """Words of the demo sample, with capitalised non-initial words tagged as entities
    (a rule, but real words and a real ClassLabel feature), saved like any NER dataset."""
    rows = []
    for line in (demo_config_path().parent / "demo.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # the sample's deliberately broken lines
            pass
    examples = {"id": [], "tokens": [], "ner_tags": [], "lang": []}
    for r in rows:
        if not (isinstance(r, dict) and isinstance(r.get("text"), str) and isinstance(r.get("id"), str)
                and r["id"].startswith(("eng", "mlt", "swa", "deu"))):
            continue
        words = r["text"].split() * 6  # long enough to need several windows
        tags, prev = [], 0
        for i, w in enumerate(words):
            ent = i > 0 and w[:1].isupper()
            kind = 1 if len(w) % 2 else 3
            tags.append(0 if not ent else (prev + 1 if prev in (1, 3) and prev == kind else kind))
            prev = tags[-1] if ent else 0
        examples["id"].append(r["id"])
        examples["tokens"].append(words)
        examples["ner_tags"].append(tags)
        examples["lang"].append(r["id"][:3])
    if broken:  # one example whose tags do not match its words, one with an unknown label
        examples["ner_tags"][0] = examples["ner_tags"][0][:-1]
        examples["ner_tags"][1] = [-1] * len(examples["tokens"][1])  # datasets allows -1 (no label)
    features = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=NAMES)),
                                  "lang": datasets.Value("string")})
    ds = datasets.Dataset.from_dict(examples, features=features)
    datasets.DatasetDict({"train": ds.select(range(3, len(ds))), "validation": ds.select(range(3))}).save_to_disk(
        str(path))
    return path


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("ner")
    src = _ner_dataset(base / "src", broken=True)
    report = _finetune({"task": "ner", "input": {"dataset": str(src)}, "max_length": 48, "stride": 8,
                        "tokenizer": {"vocab_size": 600}}, base / "out")
    return src, base / "out", report


def test_ner_windows_keep_label_names_and_label_each_word_once(ner_run):
    src, out, report = ner_run
    ds = datasets.load_from_disk(str(out))
    source = datasets.load_from_disk(str(src))
    assert ds["train"].features["ner_tags"].feature.names == NAMES
    sp = spm.SentencePieceProcessor(model_file=str(out / "tokenizer" / "tokenizer.model"))
    for split in ds:
        by_example: dict[str, list] = {}
        for row in ds[split]:
            assert len(row["input_ids"]) == 48
            by_example.setdefault(row["id"].split("#")[0], []).append(row)
        good = {r["id"]: r for r in source[split] if len(r["tokens"]) == len(r["ner_tags"])
                and min(r["ner_tags"]) >= 0}
        assert set(by_example) == set(good)
        assert any(len(w) > 1 for w in by_example.values())  # sliding windows, nothing truncated
        for ex_id, windows in by_example.items():
            labelled = {}
            for w in windows:
                for wid, lab in zip(w["word_ids"], w["labels"]):
                    if lab != IGNORE_INDEX:
                        assert wid not in labelled  # each word labelled exactly once
                        labelled[wid] = lab
            assert [labelled[i] for i in range(len(good[ex_id]["tokens"]))] == good[ex_id]["ner_tags"]
            first = windows[0]
            assert first["input_ids"][0] == sp.bos_id()
    assert report["ner"]["label_names"] == NAMES and report["accounting"]["balanced"]


def test_ner_bad_examples_go_to_dead_letter_naming_record_and_field(ner_run):
    src, out, report = ner_run
    dead = datasets.load_from_disk(str(out / "_dead_letter"))
    assert dead.num_rows == 2 and report["accounting"]["dead_letter"] == 2
    errors = sorted(dead["error"])
    assert any("'ner_tags' holds -1" in e for e in errors)
    assert any("words but" in e for e in errors)
    assert all("id=" in e for e in errors)


def test_ner_consumer_forward_backward(ner_run):
    _, out, _ = ner_run
    ds = datasets.load_from_disk(str(out))["train"]
    n_labels = len(ds.features["ner_tags"].feature.names)
    vocab = spm.SentencePieceProcessor(model_file=str(out / "tokenizer" / "tokenizer.model")).vocab_size()
    torch.manual_seed(0)
    emb, head = torch.nn.Embedding(vocab, 16), torch.nn.Linear(16, n_labels)
    loader = torch.utils.data.DataLoader(ds.with_format("torch", columns=["input_ids", "attention_mask", "labels"]),
                                         batch_size=4)
    batch = next(iter(loader))
    logits = head(emb(batch["input_ids"]) * batch["attention_mask"].unsqueeze(-1))
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, n_labels), batch["labels"].reshape(-1),
                                             ignore_index=IGNORE_INDEX)
    loss.backward()
    assert torch.isfinite(loss) and head.weight.grad.abs().sum() > 0


# --- mixing ------------------------------------------------------------------------------
def _mix_input(path: Path) -> Path:
    """A skewed two-language corpus as raw JSONL: 900 eng rows, 100 zdj rows."""
    with open(path, "w", encoding="utf-8") as f:
        for i in range(1000):
            lang = "eng" if i < 900 else "zdj"
            f.write(json.dumps({"id": f"{lang}-{i}", "text": f"row {i} of {lang} with a few words", "lang": lang})
                    + "\n")
    return path


@pytest.mark.parametrize("rule,expected_zdj", [({"temperature": 0.0}, 0.5), ({"ratios": {"eng": 1, "zdj": 1}}, 0.5),
                                               ({"temperature": 1.0}, 0.1)])
def test_mixing_follows_the_rule_and_is_deterministic(tmp_path, rule, expected_zdj):
    src = _mix_input(tmp_path / "in.jsonl")
    data = {"task": "lm", "input": {"paths": [str(src)], "splits": {"train": 1.0}}, "seq_len": 16,
            "tokenizer": {"vocab_size": 60}, "mix": {"enabled": True, "seed": 3, **rule}}
    a = _finetune(data, tmp_path / "a")
    b = _finetune(data, tmp_path / "b")
    mix = a["mix"]
    assert mix["before"] == {"eng": 900, "zdj": 100}
    assert mix["share_after"]["zdj"] == pytest.approx(expected_zdj, abs=0.04)
    assert sum(mix["after"].values()) == pytest.approx(1000, abs=40)
    assert mix == b["mix"]  # the same rows, run after run
    assert a["accounting"]["balanced"] and a["accounting"]["after_mix"] == sum(mix["after"].values())
    ds_a, ds_b = (datasets.load_from_disk(str(tmp_path / d))["train"] for d in "ab")
    assert sorted(ds_a["id"]) == sorted(ds_b["id"])


def _said(capsys) -> str:
    captured = capsys.readouterr()
    return " ".join((captured.out + captured.err).split())


def test_cli_finetune_and_config_errors(tmp_path, capsys, corpus_dir):
    out = tmp_path / "cli"
    assert main(["finetune", "--dataset", str(corpus_dir), "--task", "lm", "--output", str(out),
                 "--set", "seq_len=32", "--set", "tokenizer.vocab_size=1500"]) == 0
    assert datasets.load_from_disk(str(out))["train"].features["input_ids"].length == 32
    assert main(["finetune", "--dataset", str(corpus_dir), "--task", "lm", "--output", str(out)]) == 2
    assert "exists" in _said(capsys)
    assert main(["finetune", "--dataset", str(corpus_dir), "--task", "ner", "--output", str(tmp_path / "x")]) == 2
    assert "no column(s) ['tokens', 'ner_tags']" in _said(capsys)
    assert main(["finetune", "--dataset", str(corpus_dir), "--output", str(tmp_path / "y"),
                 "--set", "mix.enabled=true"]) == 2
    assert "exactly one of temperature or ratios" in _said(capsys)
    assert main(["finetune", "--dataset", str(corpus_dir), "--output", str(tmp_path / "z"),
                 "--set", "tokenizer.vocab_size=100"]) == 2
    assert "too small for the corpus' characters" in _said(capsys)


@pytest.mark.slow
def test_packing_across_workers_pads_once_per_language(corpus_dir, lm_run, tmp_path):
    """Two worker processes pack separately; their leftovers are packed together."""
    out, _ = lm_run
    multi = tmp_path / "multi"
    _finetune({"task": "lm", "input": {"dataset": str(corpus_dir), "batch_size": 16}, "seq_len": 64,
               "tokenizer": {"model": str(out / "tokenizer" / "tokenizer.model")}}, multi,
              "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    one, two = datasets.load_from_disk(str(out)), datasets.load_from_disk(str(multi))
    for split in one:
        assert Counter(_real_tokens(one[split])) == Counter(_real_tokens(two[split]))
        for lang in set(two[split]["lang"]):
            masks = np.asarray(two[split].filter(lambda r: r["lang"] == lang)["attention_mask"])
            assert (masks.sum(1) < 64).sum() <= 1
