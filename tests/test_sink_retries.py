"""The sink under bundle retries: a bundle whose worker died is run again by the
runner; the failed attempt's files must not reach the dataset, and no row may be
written twice."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow as pa

from xlcorpus.schemas import dataset_schema, output_features
from xlcorpus.transforms.stages import write as sink


def _batch(source: str, first: int, n: int) -> pa.RecordBatch:
    schema = dataset_schema([])
    rows = [{"id": f"{source}-{first + i}", "text": f"row {first + i}", "source": source, "line": first + i,
             "offset": 10 * (first + i), "meta": None} for i in range(n)]
    return pa.RecordBatch.from_pylist(rows, schema=schema)


def _attempt(fn: sink.WriteShardsFn, batches) -> list[dict]:
    fn.start_bundle()
    for b in batches:
        list(fn.process(b) or [])
    return [w.value for w in fn.finish_bundle()]


def test_a_retried_bundle_writes_each_row_once_and_the_failed_attempt_leaves_nothing(tmp_path):
    tmp = str(tmp_path / "out.tmp")
    schema = dataset_schema([])
    features = {sink.DATASET: output_features(schema).to_dict()}
    side, side_features = sink.accounting_outputs(tmp)
    features.update(side_features)
    spec = sink.SinkSpec(sink.DATASET, tmp, sink.hf_schema(schema, features[sink.DATASET]), None)
    batches = [_batch("a.jsonl", 1, 5), _batch("a.jsonl", 6, 5), _batch("b.jsonl", 1, 3)]

    # attempt 1 dies after writing its first file's shard: its description is never committed
    dead = sink.WriteShardsFn(spec)
    dead.start_bundle()
    dead.process(batches[0])
    dead.process(batches[2])  # a new source: the first file's shard is closed, on disk
    orphan = {info["path"] for info in dead.done}
    assert orphan and all(Path(p).exists() for p in orphan)

    retried = sink.WriteShardsFn(spec)
    committed = _attempt(retried, batches)
    assert not orphan & {info["path"] for info in committed}  # the attempts share no file

    finalize = sink.FinalizeFn(tmp, [spec, *side], features, [])
    manifest = next(iter(finalize.process(committed)))
    assert sum(s["rows"] for s in manifest["shards"] if s["kind"] == sink.DATASET) == 13
    assert not (tmp_path / "out.tmp" / "_shards").exists()  # the dead attempt's shard went with it
    ds = datasets.load_from_disk(tmp)
    assert sorted(ds["id"]) == sorted(f"a.jsonl-{i}" for i in range(1, 11)) + [f"b.jsonl-{i}" for i in (1, 2, 3)]
