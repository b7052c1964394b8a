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

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED, dead_letter_rows, rejected_rows  # noqa: F401

log = logging.getLogger(__name__)


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
