"""Exact duplicates in Beam: batch -> (shard of the normalised-text hash, keys) ->
GroupByKey -> decisions per batch -> CoGroupByKey with the waiting batches -> kept /
rejected."""

from __future__ import annotations

import apache_beam as beam
import pyarrow as pa

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED, append_columns
from xlcorpus.transforms.stages.dedup import groups
from xlcorpus.transforms.stages.dedup.keyed import Keyed, by_shard, count, joined, per_batch, split
from xlcorpus.transforms.stages.dedup.stage import Dedup, apply_exact, exact_keys, prior_key_parts, size_bucket


class _ExactKeys(Keyed):
    def side_outputs(self, batch, key):
        o = self.stage.options
        keys = exact_keys(batch, o.normalize, key)
        for shard, part in by_shard(keys.column("hash").to_numpy(), o.shards):
            yield "keys", (shard, keys.take(pa.array(part)))


def _exact_decide(item):
    _, tables = item
    d = groups.exact_decisions(pa.concat_tables(list(tables)))
    dup = d.column("duplicate").to_numpy(zero_copy_only=False)
    count("duplicates", int(dup.sum()))
    count("exact_groups", int((~dup).sum()))
    for copies in d.column("copies").to_numpy()[~dup]:
        count(f"exact_size.{size_bucket(int(copies))}")
    yield from per_batch(d, d.column("batch").to_numpy())


class _ExactApply(beam.DoFn):
    def __init__(self, count_kept: bool):
        self.count_kept = count_kept

    def process(self, item):
        for batch, decisions in joined(item, "decisions"):
            verdicts: list = [None] * batch.num_rows
            copies = apply_exact(decisions, verdicts)
            tagged = append_columns(batch, Dedup.fields[:1], {"dup_copies": pa.array(copies)})
            yield from split(batch, tagged, verdicts, self.count_kept)


class ExactDedup(beam.PTransform):
    def __init__(self, stage: Dedup, count_in: bool, count_kept: bool):
        super().__init__()
        self.stage, self.count_in, self.count_kept = stage, count_in, count_kept

    def expand(self, batches):
        keyed = batches | "ExactKeys" >> beam.ParDo(_ExactKeys(self.stage, self.count_in)).with_outputs(
            "keys", DEAD_LETTER, main="batches")
        keys = keyed["keys"]
        if self.stage.prior_keys:  # an incremental run: the rows already in the dataset take part
            prior = (batches.pipeline | "PriorKeyFile" >> beam.Create([self.stage.prior_keys])
                     | "PriorKeys" >> beam.FlatMap(prior_key_parts, self.stage.options.shards))
            keys = (keys, prior) | "WithPriorKeys" >> beam.Flatten()
        decisions = keys | "ExactGroup" >> beam.GroupByKey() | "ExactDecide" >> beam.FlatMap(_exact_decide)
        out = ({"batch": keyed["batches"], "decisions": decisions} | "ExactJoin" >> beam.CoGroupByKey()
               | "ExactApply" >> beam.ParDo(_ExactApply(self.count_kept)).with_outputs(REJECTED, main=KEPT))
        return {KEPT: out[KEPT], REJECTED: out[REJECTED], DEAD_LETTER: keyed[DEAD_LETTER]}
