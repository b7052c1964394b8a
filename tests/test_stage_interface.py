"""The stage interface: the worked example of docs/architecture.md, added as one
file plus one registry line, runs as a stage of the corpus job."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from pydantic import Field

from xlcorpus.pipelines import config as config_module
from xlcorpus.pipelines.config import ConfigError, load_config
from xlcorpus.pipelines.corpus import run_corpus
from xlcorpus.schemas import DOCUMENT_SCHEMA, owned
from xlcorpus.transforms import registry
from xlcorpus.transforms.core.accounting import append_columns, split_rows
from xlcorpus.transforms.core.stage import Stage, StageOptions, StageResult

from .conftest import write_jsonl

# --- the example stage, as in docs/architecture.md -------------------------------------
LENGTH_FIELDS = owned("length", pa.field("n_chars", pa.int32()))


class LengthOptions(StageOptions):
    min_chars: int = Field(1, ge=0, description="rows with fewer characters are rejected")


class LengthFilter(Stage[LengthOptions]):
    name = "length"
    Options = LengthOptions
    fields = LENGTH_FIELDS

    def process(self, batch: pa.RecordBatch) -> StageResult:
        n = pc.utf8_length(batch.column("text")).cast(pa.int32())
        short = pc.less(n, self.options.min_chars).to_pylist()
        verdicts = [("too_short", {"n_chars": k}) if s else None for s, k in zip(short, n.to_pylist())]
        kept, rejected = split_rows(batch, append_columns(batch, self.fields, {"n_chars": n}), verdicts, self.name)
        return StageResult(kept, rejected)
# ----------------------------------------------------------------------------------------


def _docs(texts: list[str]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"id": str(i), "text": t, "source": "f.jsonl", "line": i + 1, "offset": 0,
                                        "meta": None} for i, t in enumerate(texts)], schema=DOCUMENT_SCHEMA)


def test_example_stage_core_without_beam():
    result = LengthFilter(LengthOptions(min_chars=5)).process(_docs(["hello world", "hi", "abcde"]))
    assert result.kept.column("id").to_pylist() == ["0", "2"]
    assert result.kept.column("n_chars").to_pylist() == [11, 5]
    assert result.kept.schema.field("n_chars").metadata == {b"xlcorpus.stage": b"length"}
    assert result.rejected.column("reason").to_pylist() == ["too_short"]
    assert result.rejected.column("detail").to_pylist() == ['{"n_chars":2}']


@pytest.fixture
def with_length_stage(monkeypatch):
    """The one registry line, added for this test (the module is this file)."""
    monkeypatch.setitem(registry.STAGES, "length", f"{__name__}:LengthFilter")
    registry.stage_class.cache_clear()
    monkeypatch.setattr(config_module, "JobConfig", config_module._job_config())
    yield
    registry.stage_class.cache_clear()


def test_registered_stage_is_a_config_section_and_runs_in_the_corpus_job(tmp_path, with_length_stage):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "The weather is lovely today, is it not?"},
                                              {"id": "b", "text": "Hello"},
                                              {"id": "c", "text": "Das Wetter ist heute wirklich sehr schön."}])
    config = load_config(data={"stages": ["langid", "length"], "length": {"min_chars": 10},
                               "langid": {"threshold": 0.0},
                               "input": {"paths": [str(src)]}, "output": {"path": str(tmp_path / "out")}})
    assert config.stage_names() == ["langid", "length"] and config.length.enabled
    report = run_corpus(config)
    length = next(s for s in report["stages"] if s["stage"] == "length")
    assert length == {"stage": "length", "in": 3, "kept": 2, "rejected": {"too_short": 1}, "dead_letter": {}}
    assert report["accounting"]["balanced"]

    import datasets

    ds = datasets.load_from_disk(str(tmp_path / "out"))
    rows = sorted((r for split in ds.values() for r in split), key=lambda r: r["id"])
    assert [(r["id"], r["lang"], r["n_chars"]) for r in rows] == [("a", "eng", 39), ("c", "deu", 41)]


def test_stage_list_is_validated(with_length_stage):
    with pytest.raises(ConfigError, match="unknown stage"):
        load_config(data={"stages": ["langid", "nosuch"]})
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(data={"stages": ["length", "length"]})
    with pytest.raises(ConfigError, match=r"length\.min_chars"):
        load_config(data={"length": {"min_chars": -1}})
