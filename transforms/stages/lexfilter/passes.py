"""The Beam side of ``keep_fraction``: score every batch, take the cut score from
``ApproximateQuantiles`` over all scores (a side input), then select against it."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.stats import ApproximateQuantiles

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.core.beam import StageFn
from xlcorpus.transforms.stages.lexfilter.score import cut_from_quantiles
from xlcorpus.transforms.stages.lexfilter.stage import LexicalFilter


def _scored_values(batch: pa.RecordBatch) -> list[float]:
    """The scores of the rows the filter applies to (the quantile input)."""
    return pc.drop_null(batch.column("lex_distance")).to_numpy(zero_copy_only=False).tolist()


class KeepFraction(beam.PTransform):
    """PCollection[RecordBatch] -> {kept, rejected, dead_letter}, keeping the closest
    ``keep_fraction`` of the scored rows. The rows are counted once: the score pass
    counts ``in`` (not ``kept``), the select pass counts ``kept`` (not ``in``)."""

    def __init__(self, stage: LexicalFilter):
        super().__init__()
        self.stage = stage

    def expand(self, batches):
        stage, o = self.stage, self.stage.options
        scored = batches | "LexScore" >> beam.ParDo(StageFn(stage, method="score", count_kept=False)).with_outputs(
            REJECTED, DEAD_LETTER, main="scored")
        cut = (scored["scored"]
               | "LexScores" >> beam.Map(_scored_values)
               | "LexQuantiles" >> ApproximateQuantiles.Globally(o.num_quantiles, input_batched=True)
               | "LexCut" >> beam.Map(cut_from_quantiles, o.keep_fraction))
        # The select pass works on the annotated scores: no lexicon, so no setup.
        selected = scored["scored"] | "LexSelect" >> beam.ParDo(
            StageFn(stage, method="select", count_in=False, setup=False), beam.pvalue.AsSingleton(cut)
        ).with_outputs(REJECTED, DEAD_LETTER, main=KEPT)
        rejected = (scored[REJECTED], selected[REJECTED]) | "LexRejected" >> beam.Flatten()
        dead = (scored[DEAD_LETTER], selected[DEAD_LETTER]) | "LexDeadLetter" >> beam.Flatten()
        return {KEPT: selected[KEPT], REJECTED: rejected, DEAD_LETTER: dead}
