"""Parquet output and the dataset card: the same rows and features as the Arrow
layout, the Hub's file layout, byte-determinism, a card the Hub's parser reads."""

from __future__ import annotations

import hashlib
import re

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from xlcorpus.pipelines.card import card_languages, size_category
from xlcorpus.pipelines.cli import demo_config_path
from xlcorpus.pipelines.config import load_config
from xlcorpus.pipelines.corpus import run_corpus
from xlcorpus.transforms.stages.write import hf_schema


def _run(out, fmt: str, beam_args=(), **overrides) -> dict:
    sets = [f"output.format={fmt}", f"output.path={out}", *(f"{k}={v}" for k, v in overrides.items())]
    return run_corpus(load_config(demo_config_path(), overrides=sets), list(beam_args))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats")
    return root, _run(root / "arrow", "arrow"), _run(root / "parquet", "parquet", **{"output.license": "cc-by-4.0"})


def test_parquet_has_the_arrow_rows_and_features_in_the_hub_layout(both):
    root, arrow_report, parquet_report = both
    files = sorted(p.name for p in (root / "parquet" / "data").iterdir())
    assert files and all(re.fullmatch(r"(train|validation|test)-\d{5}-of-\d{5}\.parquet", f) for f in files)
    assert {f.split("-")[0] for f in files} == {"train", "validation", "test"}
    assert not list((root / "parquet").glob("*.arrow")) and not (root / "parquet" / "train").exists()
    arrow = datasets.load_from_disk(str(root / "arrow"))
    parquet = datasets.load_dataset("parquet", data_dir=str(root / "parquet"), cache_dir=str(root / "hf-cache"))
    assert list(parquet) == ["train", "validation", "test"]
    for split in arrow:
        assert parquet[split].features == arrow[split].features
        assert parquet[split].to_list() == arrow[split].to_list()
    assert parquet_report["accounting"] == arrow_report["accounting"]
    # rejected and dead-letter rows stay Arrow datasets beside the Parquet data
    assert len(datasets.load_from_disk(str(root / "parquet" / "_rejected"))) == parquet_report["accounting"]["rejected"]


def test_parquet_keeps_class_label_names(tmp_path):
    """ClassLabel names live in the Parquet schema's `huggingface` metadata."""
    features = datasets.Features({"id": datasets.Value("string"),
                                  "tag": datasets.ClassLabel(names=["O", "B-PER", "I-PER"])})
    schema = hf_schema(pa.schema([("id", pa.string()), ("tag", pa.int64())]), features.to_dict())
    pq.write_table(pa.table({"id": ["a"], "tag": [1]}, schema=schema), tmp_path / "train-00000-of-00001.parquet")
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "*.parquet"),
                                   cache_dir=str(tmp_path / "hf-cache"))["train"]
    assert loaded.features["tag"].names == ["O", "B-PER", "I-PER"] and loaded[0]["tag"] == 1


def test_parquet_bytes_do_not_depend_on_the_runners_parallelism(both, tmp_path):
    root, _, _ = both
    again = tmp_path / "parquet-mp"
    _run(again, "parquet", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
         **{"output.license": "cc-by-4.0"})

    def digests(d):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((d / "data").iterdir())}
    assert digests(again) == digests(root / "parquet")
    assert (again / "README.md").read_text() == (root / "parquet" / "README.md").read_text()


def test_the_card_parses_and_its_configs_load(both):
    root, arrow_report, _ = both
    for fmt, licence in (("arrow", "other"), ("parquet", "cc-by-4.0")):
        card = DatasetCard.load(root / fmt / "README.md")
        assert card.data.license == licence and card.data.pretty_name == "demo"
        assert {"en", "mt", "sw", "yo", "zh", "ar"} <= set(card.data.language)
        assert card.data.size_categories == ["n<1K"] and card.data.task_categories == ["text-generation"]
        assert [f["split"] for f in card.data.configs[0]["data_files"]] == ["train", "validation", "test"]
        loaded = datasets.load_dataset(str(root / fmt), cache_dir=str(root / f"hf-cache-{fmt}"))  # via `configs`
        assert {s: d.num_rows for s, d in loaded.items()} == arrow_report["splits"]
        body = card.text
        assert "| dedup | 368 | 362 | duplicate 6 | 0 |" in body
        assert "lid.176.ftz" in body and "CC BY-SA 3.0" in body and "demo.jsonl" in body


def test_card_helpers():
    assert [size_category(n) for n in (0, 999, 1000, 54_321, 2 * 10**9)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1B<n<10B"]
    assert card_languages({"eng": 5, "mlt": 2, "zdj": 1, "zxx": 3, "und": 1}) == ["en", "mt", "zdj"]


def test_inspect_reads_the_parquet_layout(both, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    from xlcorpus.pipelines.cli import main

    root, _, parquet_report = both
    assert main(["inspect", str(root / "parquet"), "--sample", "2", "--lang", "swa"]) == 0
    text = capsys.readouterr().out
    assert str(parquet_report["splits"]["train"]) in text and "row(s) of swa" in text and "swa-" in text



def test_parquet_partitions_load_by_config_and_leave_empty_splits_out(tmp_path):
    out = tmp_path / "parts"
    report = _run(out, "parquet", **{"output.partition_by": "lang"})
    card = DatasetCard.load(out / "README.md")
    configs = {c["config_name"]: [f["split"] for f in c["data_files"]] for c in card.data.configs}
    assert set(configs) == set(report["partitions"])
    for lang in ("mlt", "swa", "eng"):
        on_disk = sorted({p.name.split("-")[0] for p in (out / lang / "data").iterdir()})
        assert sorted(configs[lang]) == on_disk  # a split without rows has no file and no entry
        loaded = datasets.load_dataset(str(out), lang, cache_dir=str(tmp_path / f"hf-{lang}"))
        assert sum(d.num_rows for d in loaded.values()) == report["partitions"][lang]
        assert set(loaded) == set(on_disk)
