"""Rows that leave a stage through the rejected or dead-letter door.

Shared by every stage (it is not a stage itself), so each one builds these rows
the same way, routes failures the same way (``BatchStageFn``), and the sink and the
run report can count them by stage and reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import orjson
import pyarrow as pa
from apache_beam.metrics import Metrics

from xlcorpus.schemas import DEAD_LETTER_SCHEMA, REJECTED_SCHEMA

log = logging.getLogger(__name__)
KEPT, REJECTED, DEAD_LETTER = "kept", "rejected", "dead_letter"  # every stage's output tags


def rejected_rows(batch: pa.RecordBatch, rows: Sequence[int] | np.ndarray, reasons: Sequence[str],
                  details: Sequence[dict | None], stage: str) -> pa.RecordBatch:
    """``batch``'s ``rows`` as REJECTED_SCHEMA rows; ``details`` become JSON objects."""
    idx = pa.array(np.asarray(rows, dtype=np.int64))
    docs = batch.select([f.name for f in REJECTED_SCHEMA if f.name in batch.schema.names]).take(idx)
    return pa.RecordBatch.from_arrays(
        list(docs.columns) + [pa.array([stage] * len(idx), pa.string()), pa.array(list(reasons), pa.string()),
                              pa.array([orjson.dumps(d).decode() if d else None for d in details], pa.string())],
        schema=REJECTED_SCHEMA)


def dead_letter_rows(batch: pa.RecordBatch, error: Exception, stage: str, reason: str = "model_error",
                     field: str = "text") -> pa.RecordBatch:
    """Every row of ``batch`` as a dead letter naming the record, the field and the error."""
    n = batch.num_rows
    messages = [f"{s}:{line}: id={i!r}: field {field!r}: {type(error).__name__}: {error}"
                for s, line, i in zip(batch.column("source").to_pylist(), batch.column("line").to_pylist(),
                                      batch.column("id").to_pylist())]
    raw = [t.encode("utf-8", "surrogatepass") if t is not None else None for t in batch.column("text").to_pylist()]
    return pa.RecordBatch.from_arrays(
        [pa.array([stage] * n, pa.string()), pa.array([reason] * n, pa.string()), pa.array(messages, pa.string()),
         batch.column("source"), batch.column("line"), batch.column("offset"), batch.column("id"),
         pa.array(raw, pa.binary())],
        schema=DEAD_LETTER_SCHEMA)


class BatchStageFn(beam.DoFn):
    """A stage's DoFn over RecordBatches, with the accounting every stage needs.

    Subclasses implement ``step(batch, *side_inputs) -> (kept, rejected | None)``. A
    batch whose step raises is retried row by row, so one bad row cannot sink its
    neighbours; rows that still raise become dead letters naming the error. Exception
    types in ``fatal`` (configuration mistakes) fail the run instead.
    """

    stage = "stage"
    dead_reason = "model_error"
    fatal: tuple[type[BaseException], ...] = ()
    count_in = True  # False for a second pass over rows already counted
    count_kept = True  # False for a first pass whose output is not final

    def __init__(self):
        self.counters = {name: Metrics.counter(f"xlcorpus.{self.stage}", name)
                         for name in ("in", KEPT, REJECTED, DEAD_LETTER)}

    def step(self, batch: pa.RecordBatch, *side):
        raise NotImplementedError

    def process(self, batch: pa.RecordBatch, *side):
        if self.count_in:
            self.counters["in"].inc(batch.num_rows)
        try:
            results = [self.step(batch, *side)]
        except self.fatal:
            raise
        except Exception as e:
            log.warning("%s failed on a batch of %d rows (%s: %s); retrying row by row", self.stage,
                        batch.num_rows, type(e).__name__, e)
            results = []
            for i in range(batch.num_rows):
                row = batch.slice(i, 1)
                try:
                    results.append(self.step(row, *side))
                except self.fatal:
                    raise
                except Exception as err:
                    self.counters[DEAD_LETTER].inc()
                    yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter_rows(row, err, self.stage,
                                                                                 self.dead_reason))
        for kept, rejected in results:
            if kept.num_rows:
                if self.count_kept:
                    self.counters[KEPT].inc(kept.num_rows)
                yield kept
            if rejected is not None and rejected.num_rows:
                self.counters[REJECTED].inc(rejected.num_rows)
                yield beam.pvalue.TaggedOutput(REJECTED, rejected)
