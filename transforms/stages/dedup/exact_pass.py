"""Exact duplicates in Beam: batch -> (shard of the normalised-text hash, keys) ->
GroupByKey -> decisions per batch -> CoGroupByKey with the waiting batches -> kept /
rejected."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED, append_columns
from xlcorpus.transforms.stages.dedup import groups, text
from xlcorpus.transforms.stages.dedup.keyed import Keyed, batch_key, by_shard, count, join_key, split, unpack
from xlcorpus.transforms.stages.dedup.stage import Dedup, size_bucket


class _ExactKeys(Keyed):
    def side_outputs(self, batch):
        o = self.stage.options
        normalized = text.normalize(batch.column("text"), o.normalize)
        rows = np.flatnonzero(pc.greater(pc.utf8_length(normalized), 0).to_numpy(zero_copy_only=False))
        take = pa.array(rows)
        hashes = text.text_hashes(normalized.take(take))
        keys = pa.table({"hash": hashes, "id": batch.column("id").take(take),
                         "source": batch.column("source").take(take), "line": batch.column("line").take(take),
                         "batch": np.full(len(rows), batch_key(batch), np.uint64), "row": rows.astype(np.int32)},
                        schema=groups.EXACT_KEYS)
        for shard, part in by_shard(hashes, o.shards):
            yield "keys", (shard, keys.take(pa.array(part)))


def _exact_decide(item):
    _, tables = item
    d = groups.exact_decisions(pa.concat_tables(list(tables)))
    dup = d.column("duplicate").to_numpy(zero_copy_only=False)
    count("duplicates", int(dup.sum()))
    count("exact_groups", int((~dup).sum()))
    for copies in d.column("copies").to_numpy()[~dup]:
        count(f"exact_size.{size_bucket(int(copies))}")
    batches = d.column("batch").to_numpy()
    for b in np.unique(batches):
        yield join_key(b), d.filter(pa.array(batches == b))


class _ExactApply(beam.DoFn):
    def __init__(self, count_kept: bool):
        self.count_kept = count_kept

    def process(self, item):
        _, joined = item
        decisions = list(joined["decisions"])
        d = pa.concat_tables(decisions).to_pydict() if decisions else None
        # one batch per key: inputs are de-duplicated paths and a batch's key is its first (source, line)
        for batch in map(unpack, joined["batch"]):
            n = batch.num_rows
            copies = np.ones(n, np.int32)
            verdicts: list = [None] * n
            if d is not None:
                for row, c, kid, ks, kl, dup in zip(d["row"], d["copies"], d["kept_id"], d["kept_source"],
                                                     d["kept_line"], d["duplicate"]):
                    copies[row] = c
                    if dup:
                        verdicts[row] = ("duplicate", {"kept": kid, "kept_source": ks, "kept_line": kl, "copies": c})
            tagged = append_columns(batch, Dedup.fields[:1], {"dup_copies": pa.array(copies)})
            yield from split(batch, tagged, verdicts, self.count_kept)


class ExactDedup(beam.PTransform):
    def __init__(self, stage: Dedup, count_in: bool, count_kept: bool):
        super().__init__()
        self.stage, self.count_in, self.count_kept = stage, count_in, count_kept

    def expand(self, batches):
        keyed = batches | "ExactKeys" >> beam.ParDo(_ExactKeys(self.stage, self.count_in)).with_outputs(
            "keys", DEAD_LETTER, main="batches")
        decisions = keyed["keys"] | "ExactGroup" >> beam.GroupByKey() | "ExactDecide" >> beam.FlatMap(_exact_decide)
        out = ({"batch": keyed["batches"], "decisions": decisions} | "ExactJoin" >> beam.CoGroupByKey()
               | "ExactApply" >> beam.ParDo(_ExactApply(self.count_kept)).with_outputs(REJECTED, main=KEPT))
        return {KEPT: out[KEPT], REJECTED: out[REJECTED], DEAD_LETTER: keyed[DEAD_LETTER]}
