"""The Beam side of dedup: every decision is made in a grouping keyed by hash shard,
so duplicates are found across files and workers, and nothing is collected on the
driver.

Exact:  batch -> (shard of text hash, keys) -> GroupByKey -> decisions per batch
        -> CoGroupByKey with the batches (keyed by their first row) -> kept / rejected.
Near:   batch -> signatures, band keys, a node directory
        band keys -> GroupByKey(shard) -> candidate pairs (bucket stars)
        candidates + signatures -> CoGroupByKey(node shard) -> GroupByKey(pair shard) -> verified pairs
        rounds x (large-star, small-star), each a GroupByKey(node shard) -> labels
        labels + directory -> CoGroupByKey(node shard) -> labels per batch -> CoGroupByKey with the batches.

Every element is a table of rows of one shard, so a batch sends ``shards`` elements
through each grouping, never one per row.
"""

from __future__ import annotations

import apache_beam as beam

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.core.beam import flatten_or_empty
from xlcorpus.transforms.stages.dedup.exact_pass import ExactDedup
from xlcorpus.transforms.stages.dedup.keyed import with_nulls
from xlcorpus.transforms.stages.dedup.near_pass import NearDedup
from xlcorpus.transforms.stages.dedup.stage import Dedup


class DedupTransform(beam.PTransform):
    """PCollection[RecordBatch] -> {kept, rejected, dead_letter}: exact, then near."""

    def __init__(self, stage: Dedup):
        super().__init__()
        self.stage = stage

    def expand(self, batches):
        o = self.stage.options
        rejected, dead = [], []
        kept = batches
        if o.exact.enabled:
            out = kept | "Exact" >> ExactDedup(self.stage, count_in=True, count_kept=not o.minhash.enabled)
            kept = out[KEPT]
            rejected.append(out[REJECTED])
            dead.append(out[DEAD_LETTER])
        else:
            kept = kept | "NoCopies" >> beam.Map(with_nulls, ("dup_copies",))
        if o.minhash.enabled:
            out = kept | "Near" >> NearDedup(self.stage, count_in=not o.exact.enabled)
            kept = out[KEPT]
            rejected.append(out[REJECTED])
            dead.append(out[DEAD_LETTER])
        else:
            kept = kept | "NoClusters" >> beam.Map(with_nulls, ("dup_cluster", "dup_cluster_size"))
        p = batches.pipeline
        return {KEPT: kept, REJECTED: flatten_or_empty(p, "DedupRejected", rejected),
                DEAD_LETTER: flatten_or_empty(p, "DedupDeadLetter", dead)}
