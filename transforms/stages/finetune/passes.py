"""The fine-tuning stages in Beam: stream packing per bundle, the bundles' tails packed
together, and the report counters (``stats``) sent to a STATS output.

Built from the core's ``StageFn``; only the per-bundle packing, whose state (one
``StreamPacker`` per split and language) spans a bundle, is a DoFn of its own.
"""

from __future__ import annotations

from collections import Counter

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.core.beam import StageFn
from xlcorpus.transforms.stages.finetune.common import STATS

TAILS = "tails"


def _emit(value, tag: str):
    """A tagged value from finish_bundle (which must say its window)."""
    return beam.pvalue.TaggedOutput(tag, WindowedValue(value, GlobalWindow().max_timestamp(), [GlobalWindow()]))


class ReportStatsFn(StageFn):
    """``StageFn`` whose ``stats`` are run-report counters: summed over the bundle and
    sent to STATS (zeros included), not to Beam metrics."""

    def start_bundle(self):
        self.bundle_stats: Counter = Counter()

    def _stat(self, name: str, value: int):
        self.bundle_stats[name] += value

    def finish_bundle(self):
        yield _emit(dict(self.bundle_stats), STATS)


class PackBundleFn(beam.DoFn):
    """``PackSequences.pack_batch`` over a bundle: full sequences leave as they fill, the
    leftovers go to TAILS and the bundle's counters to STATS at its end."""

    def __init__(self, stage):
        self.stage = stage
        self.documents = Metrics.counter(f"xlcorpus.{stage.name}", "documents")
        self.sequences = Metrics.counter(f"xlcorpus.{stage.name}", "sequences")

    def setup(self):
        self.stage.setup()

    def teardown(self):
        self.stage.teardown()

    def start_bundle(self):
        self.packer = self.stage.bundle()

    def process(self, batch):
        rows, rejected = self.stage.pack_batch(batch, self.packer)
        self.documents.inc(batch.num_rows)
        if rejected is not None:
            yield beam.pvalue.TaggedOutput(REJECTED, rejected)
        for out in rows:
            self.sequences.inc(out.num_rows)
            yield out

    def finish_bundle(self):
        for key, tail in self.packer.tails():
            yield _emit((key, tail), TAILS)
        yield _emit(dict(self.packer.stats), STATS)


class PackSequencesTransform(beam.PTransform):
    """Rows -> {kept: packed sequences, rejected, stats}."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage

    def expand(self, rows):
        packed = rows | "Pack" >> beam.ParDo(PackBundleFn(self.stage)).with_outputs(TAILS, STATS, REJECTED, main=KEPT)
        # the tails' rows were counted as documents already: no in/kept counters here
        tails = (packed[TAILS] | "GroupTails" >> beam.GroupByKey()
                 | "PackTails" >> beam.ParDo(ReportStatsFn(self.stage, method="pack_tails", count_in=False,
                                                           count_kept=False)).with_outputs(
                     STATS, REJECTED, DEAD_LETTER, main=KEPT))
        return {KEPT: (packed[KEPT], tails[KEPT]) | "AllSequences" >> beam.Flatten(),
                REJECTED: packed[REJECTED],
                STATS: (packed[STATS], tails[STATS]) | "AllStats" >> beam.Flatten()}


class AlignNerTransform(beam.PTransform):
    """Rows -> {kept: windows, rejected, dead_letter, stats}."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage

    def expand(self, rows):
        out = rows | "AlignNer" >> beam.ParDo(ReportStatsFn(self.stage)).with_outputs(
            STATS, REJECTED, DEAD_LETTER, main=KEPT)
        return {KEPT: out[KEPT], REJECTED: out[REJECTED], DEAD_LETTER: out[DEAD_LETTER], STATS: out[STATS]}
