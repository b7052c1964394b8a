"""What both dedup passes share in Beam: counters, key shards, batch keys, the
compressed form in which a batch waits for its decisions, and the first DoFn shape
(count, key the batch, catch errors)."""

from __future__ import annotations

import logging

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.metrics import Metrics

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED, append_columns, dead_letter_rows, split_rows
from xlcorpus.transforms.core.progress import tick
from xlcorpus.transforms.stages.dedup import groups, text
from xlcorpus.transforms.stages.dedup.stage import Dedup

log = logging.getLogger(__name__)
NAMESPACE = "xlcorpus.dedup"


def count(name: str, value: int = 1) -> None:
    if value:
        Metrics.counter(NAMESPACE, name).inc(int(value))
        if name in ("in", KEPT):
            tick(Dedup.name, name, int(value))


def by_shard(nodes: np.ndarray, shards: int):
    """(shard, row indices) for each shard present among ``nodes``."""
    shard = groups.shard_of(nodes, shards)
    order = np.argsort(shard, kind="stable")
    cuts = np.flatnonzero(np.diff(shard[order])) + 1
    for part in np.split(order, cuts):
        if len(part):
            yield int(shard[part[0]]), part


def batch_key(batch: pa.RecordBatch) -> int:
    """A batch's join key: its first row's key (rows are unique by source and line)."""
    return int(text.row_keys(batch.slice(0, 1))[0])


def join_key(batch_key) -> int:
    """The Beam key of a batch: 63 bits (Beam's integer coder is signed 64-bit)."""
    return int(batch_key) >> 1


def with_nulls(batch: pa.RecordBatch, names: tuple[str, ...]) -> pa.RecordBatch:
    fields = [f for f in Dedup.fields if f.name in names]
    return append_columns(batch, fields, {f.name: pa.nulls(batch.num_rows, f.type) for f in fields})


def pack(batch: pa.RecordBatch) -> bytes:
    """A batch waiting for its dedup decisions, as zstd-compressed Arrow IPC: every batch
    waits in the runner's shuffle until all decisions exist, so its size is the
    stage's memory on runners that keep shuffles in memory (the DirectRunner)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def unpack(data: bytes) -> pa.RecordBatch:
    return pa.ipc.open_stream(data).read_next_batch()


class Keyed(beam.DoFn):
    """Shared shape of the first pass of each part: count, key the batch, catch errors."""

    def __init__(self, stage: Dedup, count_in: bool):
        self.stage, self.count_in = stage, count_in

    def process(self, batch: pa.RecordBatch):
        if self.count_in:
            count("in", batch.num_rows)
        if batch.num_rows == 0:
            return
        key = batch_key(batch)
        try:
            side = list(self.side_outputs(batch, key))
        except Exception as e:  # one malformed batch must not fail the run: its rows become dead letters
            log.exception("dedup failed on a batch of %d rows", batch.num_rows)
            count(DEAD_LETTER, batch.num_rows)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter_rows(batch, e, Dedup.name, Dedup.dead_reason))
            return
        yield join_key(key), pack(batch)
        for tag, value in side:
            yield beam.pvalue.TaggedOutput(tag, value)


def per_batch(table: pa.Table, batches: np.ndarray):
    """(join key, rows of ``table`` for that batch) for each batch in ``batches`` (the
    batch key of each row of ``table``)."""
    for b in np.unique(batches):
        yield join_key(b), table.filter(pa.array(batches == b))


def joined(item, tag: str):
    """The batches of one CoGroupByKey result, each with the rows of ``tag`` routed to
    it, as a dict of columns (None: nothing for it). One batch per key in practice:
    inputs are de-duplicated paths and a batch's key is its first (source, line)."""
    _, by_tag = item
    tables = list(by_tag[tag])
    routed = pa.concat_tables(tables).to_pydict() if tables else None
    for batch in map(unpack, by_tag["batch"]):
        yield batch, routed


def split(batch, tagged, verdicts, count_kept: bool):
    kept, rejected = split_rows(batch, tagged, verdicts, Dedup.name)
    if rejected is not None:
        count(REJECTED, rejected.num_rows)
        yield beam.pvalue.TaggedOutput(REJECTED, rejected)
    if kept.num_rows:
        if count_kept:
            count(KEPT, kept.num_rows)
        yield kept
