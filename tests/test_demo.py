"""`xlcorpus demo` as a new user runs it: the corpus job, then the bundled English NER
sample projected into the synthetic language with the reference model."""

from __future__ import annotations

import json

import datasets

from xlcorpus.pipelines.cli import main


def test_demo_writes_the_corpus_and_the_projected_ner_sample(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out)]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "label projection (constrained decoding, synth-en-xx)" in said
    assert "LLM annotation is off" in said
    assert set(datasets.load_from_disk(str(out))) == {"train", "validation", "test"}

    projected = datasets.load_from_disk(str(out / "projection"))
    names = projected.features["ner_tags"].feature.names
    assert names[0] == "O" and {"B-PER", "I-LOC", "B-ORG", "B-MISC"} <= set(names)
    report = json.loads((out / "projection" / "report.json").read_text())
    assert report["accounting"]["in"] == 20 and report["accounting"]["balanced"]
    assert projected.num_rows == report["accounting"]["kept"] >= 10
    for row in projected:
        assert row["method"] == "constrained" and len(row["tokens"]) == len(row["ner_tags"])
        for span in row["spans"]:
            assert 0 <= span["start"] < span["end"] <= len(row["text"])
            assert f"B-{span['label']}" in names
        # the projected spans are the ones the tags spell out
        assert sum(names[t].startswith("B-") for t in row["ner_tags"]) == len(row["spans"])
