"""NER readers: CoNLL/IOB2, JSONL spans, HF datasets; bad records -> dead letters."""

from __future__ import annotations

import io
import json

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from xlcorpus.schemas import DEAD_LETTER_SCHEMA, NER_SCHEMA
from xlcorpus.transforms.stages.read import ner as ni


def _collect(items):
    docs, dead = [], []
    for tag, batch in items:
        (docs if tag == ni.DOCS else dead).append(batch)
    rows = pa.Table.from_batches(docs, NER_SCHEMA).to_pylist() if docs else []
    dead_rows = pa.Table.from_batches(dead, DEAD_LETTER_SCHEMA).to_pylist() if dead else []
    return rows, dead_rows


CONLL = """-DOCSTART- -X- O O

Maria NNP B-PER
visited VBD O
North NNP B-LOC
Kavia NNP I-LOC
. . O

The DT O
Bank NNP I-ORG
opened VBD O

John B-PER
Smith I-LOC

Acme B-ORG
Corp I-ORG
"""


def test_conll_reads_sentences_and_dead_letters_inconsistent_tags():
    rows, dead = _collect(ni.read_conll(io.BytesIO(CONLL.encode()), "x.conll"))
    assert [r["tokens"] for r in rows] == [["Maria", "visited", "North", "Kavia", "."], ["Acme", "Corp"]]
    first = rows[0]
    assert first["text"] == "Maria visited North Kavia ."
    assert [(first["text"][s["start"]:s["end"]], s["label"]) for s in first["spans"]] == [
        ("Maria", "PER"), ("North Kavia", "LOC")]
    assert first["line"] == 3 and first["source"] == "x.conll"
    assert rows[1]["spans"] == [{"start": 0, "end": 9, "label": "ORG"}]
    assert [d["reason"] for d in dead] == ["inconsistent_tags", "inconsistent_tags"]
    assert "I- without a preceding B-ORG" in dead[0]["error"] and dead[0]["line"] == 9
    assert "I-LOC continues a PER entity" in dead[1]["error"] and "ner_tags" in dead[1]["error"]
    assert dead[1]["raw"] == b"John B-PER\nSmith I-LOC"


def test_iob2_rejects_bad_tags():
    assert ni.iob2_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC"]) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC")]
    for tags in (["I-PER"], ["B-PER", "I-LOC"], ["X-PER"], ["B-"]):
        with pytest.raises(ni.NerInputError):
            ni.iob2_spans(tags)


def test_jsonl_validation_names_record_and_field():
    lines = [
        {"id": "a", "text": "Maria saw Paris.", "spans": [{"start": 0, "end": 5, "label": "PER"},
                                                          {"start": 10, "end": 15, "label": "LOC"}], "x": 1},
        {"id": "b", "text": "short", "spans": [{"start": 0, "end": 9, "label": "PER"}]},
        {"id": "c", "text": "Maria Smith", "spans": [{"start": 0, "end": 5, "label": "PER"},
                                                    {"start": 3, "end": 11, "label": "PER"}]},
        {"id": "d", "text": "no spans"},
        "not json",
        {"id": "e", "text": "x", "spans": [{"start": "0", "end": 1, "label": "PER"}]},
    ]
    data = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines).encode()
    rows, dead = _collect(ni.read_jsonl(io.BytesIO(data), "in.jsonl"))
    assert [r["id"] for r in rows] == ["a"]
    assert rows[0]["tokens"] == ["Maria", "saw", "Paris", "."] and json.loads(rows[0]["meta"]) == {"x": 1}
    by_id = {d["id"]: d for d in dead}
    assert "out of range" in by_id["b"]["error"] and "'spans'" in by_id["b"]["error"]
    assert "overlaps" in by_id["c"]["error"] and "id='c'" in by_id["c"]["error"]
    assert by_id["d"]["reason"] == "invalid_spans"
    assert "must be integers" in by_id["e"]["error"]
    assert {d["reason"] for d in dead if d["id"] is None} == {"invalid_json"}
    # unlabelled text is fine where spans are optional (translate-test input)
    rows, _ = _collect(ni.read_jsonl(io.BytesIO(data), "in.jsonl", ni.NerReaderOptions(require_spans=False)))
    assert "d" in [r["id"] for r in rows]


def _hf_dataset(path, tokens, tags, names):
    import datasets

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    datasets.Dataset.from_dict({"tokens": tokens, "ner_tags": tags}, features=features).save_to_disk(str(path))
    return str(path)


def test_hf_dataset_reader_uses_classlabel_names(tmp_path):
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    path = _hf_dataset(tmp_path / "ds", [["Anna", "Berg", "left"], ["in", "Kavia"], ["bad"]],
                       [[1, 2, 0], [0, 3], [4]], names)
    rows, dead = _collect(ni.read_ner(path))
    assert [r["text"] for r in rows] == ["Anna Berg left", "in Kavia"]
    assert rows[0]["spans"] == [{"start": 0, "end": 9, "label": "PER"}]
    assert len(dead) == 1 and dead[0]["reason"] == "inconsistent_tags" and dead[0]["line"] == 3
    assert ni.label_types([path]) == ["LOC", "PER"]


def test_unreadable_input_is_one_dead_letter(tmp_path):
    bad = tmp_path / "nothing.conll"
    rows, dead = _collect(ni.read_ner(str(bad)))
    assert rows == [] and len(dead) == 1 and dead[0]["reason"] == "unreadable_file"


def test_read_ner_transform(tmp_path):
    path = tmp_path / "a.conll"
    path.write_text(CONLL)
    with TestPipeline() as p:
        out = p | ni.ReadNer([str(path)])
        ids = out[ni.DOCS] | "n" >> beam.Map(lambda b: b.num_rows) | "s" >> beam.CombineGlobally(sum)
        dead = out[ni.DEAD_LETTER] | "d" >> beam.Map(lambda b: b.num_rows) | "ds" >> beam.CombineGlobally(sum)
        stats = out[ni.FILE_STATS] | beam.Map(lambda s: s["lines"])
        assert_that(ids, equal_to([2]), label="docs")
        assert_that(dead, equal_to([2]), label="dead")
        assert_that(stats, equal_to([4]), label="stats")
