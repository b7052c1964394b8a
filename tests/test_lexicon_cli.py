"""`xlcorpus lexicon build / distance`, and the demo's shipped lexicons."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from xlcorpus.pipelines import lexicon
from xlcorpus.pipelines.cli import demo_config_path, main
from xlcorpus.transforms.stages.lexfilter import read_lexicon

from .conftest import write_jsonl

DATA = demo_config_path().parent


def test_build_counts_words_and_filters_by_language_field(tmp_path):
    src = write_jsonl(tmp_path / "ref.jsonl", [
        {"text": "Mvua ya leo, mvua ya jana.", "lang": "zdj"}, {"text": "Rain today", "lang": "eng"},
        {"text": "Maji ya mvua", "lang": "zdj"}, "{broken"])
    summary = lexicon.build([str(src)], "zdj", str(tmp_path / "zdj.parquet"), lang_field="lang")
    table = pq.read_table(tmp_path / "zdj.parquet")
    assert dict(zip(table.column("word").to_pylist(), table.column("count").to_pylist())) == {
        "mvua": 3, "ya": 3, "leo": 1, "jana": 1, "maji": 1}
    assert table.schema.metadata[b"xlcorpus.lexicon.lang"] == b"zdj"
    assert summary["words"] == 5 and summary["tokens"] == 9


def test_build_can_romanize_first(tmp_path):
    src = write_jsonl(tmp_path / "ru.jsonl", [{"text": "Москва и Москва"}])
    lexicon.build([str(src)], "rus", str(tmp_path / "ru.parquet"), romanize=True)
    assert read_lexicon(tmp_path / "ru.parquet").words[:2] == ["moskva", "i"]


def test_shipped_demo_lexicons_are_built_from_the_demo_corpus(tmp_path):
    lines = (DATA / "demo.jsonl").read_text(encoding="utf-8").splitlines()
    for lang in ("zdj", "swa", "mlt", "eng", "yor"):
        part = tmp_path / f"{lang}.jsonl"
        # the sample's planted duplicates (ids *-copy) came after the lexicons
        part.write_text("\n".join(l for l in lines if f'"id": "{lang}-' in l and '-copy"' not in l) + "\n",
                        encoding="utf-8")
        lexicon.build([str(part)], lang, str(tmp_path / f"{lang}.parquet"))
        rebuilt = pq.read_table(tmp_path / f"{lang}.parquet")
        shipped = pq.read_table(DATA / f"lexicon-{lang}.parquet")
        assert rebuilt.to_pylist() == shipped.to_pylist(), lang


def test_distance_command_ranks_swahili_closest_to_comorian(tmp_path, capsys):
    args = ["lexicon", "distance", "--target", str(DATA / "lexicon-zdj.parquet"), "--out", str(tmp_path / "d.json")]
    args += [f"{lang}={DATA / f'lexicon-{lang}.parquet'}" for lang in ("eng", "mlt", "swa", "yor")]
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[1].split()[:2] == ["1", "swa"]
    stored = json.loads((tmp_path / "d.json").read_text())
    assert [r["lang"] for r in stored["distances"]][0] == "swa"
    assert stored["distances"][0]["levenshtein"] < stored["distances"][1]["levenshtein"]
