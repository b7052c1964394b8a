"""The one Beam adapter: any ``Stage`` becomes a PTransform with tagged outputs
kept / rejected / dead_letter and per-stage metrics (``xlcorpus.<stage>``)."""

from __future__ import annotations

import logging

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED, dead_letter_rows
from xlcorpus.transforms.core.progress import tick
from xlcorpus.transforms.core.stage import Stage, StageResult

log = logging.getLogger(__name__)


class StageFn(beam.DoFn):
    """Runs ``stage.<method>`` over RecordBatches, with the accounting every stage needs.

    A batch whose call raises is retried row by row (``Stage.retry_rows``), so one bad
    row cannot sink its neighbours; rows that still raise become dead letters naming
    the error. Exceptions in ``Stage.fatal`` fail the run. ``count_in`` / ``count_kept``
    are False for a pass whose rows another pass of the same stage counts.
    """

    def __init__(self, stage: Stage, method: str = "process", count_in: bool = True, count_kept: bool = True,
                 setup: bool = True):
        super().__init__()
        self.stage, self.method = stage, method
        self.count_in, self.count_kept, self.run_setup = count_in, count_kept, setup
        namespace = f"xlcorpus.{stage.name}"
        self.counters = {name: Metrics.counter(namespace, name) for name in ("in", KEPT, REJECTED, DEAD_LETTER)}
        self.namespace = namespace
        self.stats: dict[str, object] = {}

    def setup(self):
        if self.run_setup:
            self.stage.setup()
        self.call = getattr(self.stage, self.method)

    def teardown(self):
        if self.run_setup:
            self.stage.teardown()

    def _stat(self, name: str, value: int):
        if value:
            if name not in self.stats:
                self.stats[name] = Metrics.counter(self.namespace, name)
            self.stats[name].inc(value)

    def process(self, batch: pa.RecordBatch, *side):
        stage = self.stage
        if self.count_in:
            self.counters["in"].inc(batch.num_rows)
            tick(stage.name, "in", batch.num_rows)
        try:
            results = [self.call(batch, *side)]
        except stage.fatal:
            raise
        except Exception as e:
            if not stage.retry_rows:
                log.exception("%s failed on a batch of %d rows", stage.name, batch.num_rows)
                results = [StageResult(batch.slice(0, 0), None, dead_letter_rows(batch, e, stage.name, stage.dead_reason,
                                                                                 field=stage.dead_field))]
            else:
                log.warning("%s failed on a batch of %d rows (%s: %s); retrying row by row", stage.name,
                            batch.num_rows, type(e).__name__, e)
                results = []
                for i in range(batch.num_rows):
                    row = batch.slice(i, 1)
                    try:
                        results.append(self.call(row, *side))
                    except stage.fatal:
                        raise
                    except Exception as err:
                        results.append(StageResult(row.slice(0, 0), None,
                                                   dead_letter_rows(row, err, stage.name, stage.dead_reason,
                                                                    field=stage.dead_field)))
        for result in results:
            kept, rejected, dead, stats = result
            if kept is not None and kept.num_rows:
                if self.count_kept:
                    self.counters[KEPT].inc(kept.num_rows)
                    tick(stage.name, KEPT, kept.num_rows)
                yield kept
            if rejected is not None and rejected.num_rows:
                self.counters[REJECTED].inc(rejected.num_rows)
                yield beam.pvalue.TaggedOutput(REJECTED, rejected)
            if dead is not None and dead.num_rows:
                self.counters[DEAD_LETTER].inc(dead.num_rows)
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead)
            for name, value in (stats or {}).items():
                self._stat(name, value)


class StageTransform(beam.PTransform):
    """PCollection[RecordBatch] -> {kept, rejected, dead_letter} for one stage."""

    def __init__(self, stage: Stage, label: str | None = None):
        super().__init__()
        self.stage, self.step_label = stage, label or stage.name.title().replace("_", "")

    def expand(self, batches):
        out = batches | self.step_label >> beam.ParDo(StageFn(self.stage)).with_outputs(
            REJECTED, DEAD_LETTER, main=KEPT)
        return {KEPT: out[KEPT], REJECTED: out[REJECTED], DEAD_LETTER: out[DEAD_LETTER]}


def flatten_or_empty(p: beam.Pipeline, label: str, pcolls: list):
    """One PCollection of all of ``pcolls`` (an empty one when there are none)."""
    if not pcolls:
        return p | f"No{label}" >> beam.Create([])
    return pcolls[0] if len(pcolls) == 1 else tuple(pcolls) | f"All{label}" >> beam.Flatten()
