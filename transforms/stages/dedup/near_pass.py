"""Near duplicates in Beam: batch -> signatures, band keys and a node directory;
band keys -> GroupByKey(shard) -> candidate pairs (bucket stars); candidates +
signatures -> CoGroupByKey(node shard) -> GroupByKey(pair shard) -> verified pairs;
``rounds`` x (large-star, small-star), each a GroupByKey(node shard) -> labels;
labels + directory -> labels per batch -> CoGroupByKey with the waiting batches."""

from __future__ import annotations

import apache_beam as beam
import numpy as np
import pyarrow as pa

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED, append_columns
from xlcorpus.transforms.stages.dedup import groups, text
from xlcorpus.transforms.stages.dedup.keyed import Keyed, by_shard, count, joined, per_batch, split
from xlcorpus.transforms.stages.dedup.stage import Dedup, Signer, apply_near, size_bucket


class _Sign(Keyed):
    def setup(self):
        self.signer = Signer(self.stage.options)

    def side_outputs(self, batch, key):
        shards = self.stage.options.shards
        sig, bands, has = self.signer.sign(batch.column("text"))
        rows = np.flatnonzero(has)
        nodes = text.row_keys(batch.take(pa.array(rows)))
        sig, bands = sig[rows], bands[rows]
        for shard, part in by_shard(nodes, shards):  # signatures and where each node lives
            yield "sigs", (shard, ("sig", nodes[part], sig[part]))
            yield "directory", (shard, ("dir", nodes[part], np.full(len(part), key, np.uint64),
                                        rows[part].astype(np.int32)))
        flat_bands, flat_nodes = bands.ravel(), np.repeat(nodes, bands.shape[1])
        for shard, part in by_shard(flat_bands, shards):
            yield "bands", (shard, (flat_bands[part], flat_nodes[part]))


def _edges_by(edges: np.ndarray, column: int, shards: int, tag: str | None = None):
    """``edges`` split by the shard of one endpoint: (shard, edges) or (shard, (tag, edges))."""
    if not len(edges):
        return
    for shard, part in by_shard(edges[:, column], shards):
        yield shard, (edges[part] if tag is None else (tag, edges[part]))


def _candidates(item, shards: int, verify: bool):
    _, parts = item
    parts = list(parts)
    edges = groups.candidate_edges(np.concatenate([b for b, _ in parts]), np.concatenate([n for _, n in parts]))
    count("candidate_pairs", len(edges))
    if not verify:
        yield from _edges_by(edges, 0, shards)
        return
    yield from _edges_by(edges, 0, shards, "u")
    yield from _edges_by(edges, 1, shards, "v")


def _pair_shard(edges: np.ndarray, shards: int) -> np.ndarray:
    return groups.shard_of(text.mix64(edges[:, 0] ^ text.mix64(edges[:, 1])), shards)


def _attach_signatures(item, shards: int):
    """Candidate pairs of this node shard, each with the signature of its endpoint here."""
    _, joined = item
    sigs = [(n, s) for _, n, s in joined["sig"]]
    if not sigs:
        return
    nodes = np.concatenate([n for n, _ in sigs])
    matrix = np.concatenate([s for _, s in sigs])
    order = np.argsort(nodes)
    nodes, matrix = nodes[order], matrix[order]
    for side, edges in joined["edges"]:
        col = 0 if side == "u" else 1
        at = np.searchsorted(nodes, edges[:, col])
        pair = _pair_shard(edges, shards)
        for shard in np.unique(pair):
            sel = pair == shard
            yield int(shard), (side, edges[sel], matrix[at[sel]])


def _verify(item, cutoff: float, shards: int):
    """Pairs whose two signatures agree on at least ``cutoff`` of their positions."""
    _, halves = item
    halves = list(halves)
    sides = {}
    for side in ("u", "v"):
        got = [(e, s) for t, e, s in halves if t == side]
        if not got:  # cannot happen (both ends of a pair are signed nodes); nothing to verify
            return
        edges = np.concatenate([e for e, _ in got])
        edges, first = np.unique(edges, axis=0, return_index=True)  # a pair found in several bands: once
        sides[side] = (edges, np.concatenate([s for _, s in got])[first])
    (edges, sig_u), (_, sig_v) = sides["u"], sides["v"]
    edges, _ = groups.verified(edges, sig_u, sig_v, cutoff)
    count("verified_pairs", len(edges))
    yield from _edges_by(edges, 0, shards)


def _concat(item) -> np.ndarray:
    _, parts = item
    return groups.unique_edges(np.concatenate(list(parts)))


def _large_star(item, shards: int):
    edges = groups.large_star(_concat(item))
    yield from _edges_by(groups.larger_first(edges), 0, shards)


def _small_star(item, shards: int):
    yield from _edges_by(groups.small_star(_concat(item)), 0, shards)


def _both_ways(item, shards: int):
    _, edges = item
    yield from _edges_by(groups.both_directions(edges), 0, shards)


def _child_and_parent(item, shards: int):
    _, edges = item
    yield from _edges_by(edges, 0, shards, "c")
    yield from _edges_by(edges, 1, shards, "p")


def _labels(item, shards: int):
    _, parts = item
    parts = list(parts)
    empty = np.zeros((0, 2), np.uint64)
    child = np.concatenate([e for t, e in parts if t == "c"] or [empty])
    parent = np.concatenate([e for t, e in parts if t == "p"] or [empty])
    table, unconverged = groups.labels(child, parent)
    count("not_converged", unconverged)
    roots = table.column("root").to_numpy(zero_copy_only=False)
    count("near_duplicates", int((~roots).sum()))
    count("clusters", int(roots.sum()))
    for size in table.column("size").to_numpy()[roots]:
        count(f"cluster_size.{size_bucket(int(size))}")
    nodes = table.column("node").to_numpy()
    for shard, part in by_shard(nodes, shards):
        yield shard, ("label", table.take(pa.array(part)))


def _labels_per_batch(item):
    """Labels of this node shard, routed to the batches their rows are in."""
    _, parts = item
    parts = list(parts)
    labels = [p[1] for p in parts if p[0] == "label"]
    dirs = [p[1:] for p in parts if p[0] == "dir"]
    if not labels or not dirs:
        return
    table = pa.concat_tables(labels)
    nodes = np.concatenate([n for n, _, _ in dirs])
    order = np.argsort(nodes)
    nodes = nodes[order]
    batch_of = np.concatenate([b for _, b, _ in dirs])[order]
    row_of = np.concatenate([r for _, _, r in dirs])[order]
    at = np.searchsorted(nodes, table.column("node").to_numpy())
    yield from per_batch(table.append_column("row", pa.array(row_of[at])), batch_of[at])


class _NearApply(beam.DoFn):
    def process(self, item):
        for batch, labels in joined(item, "labels"):
            verdicts: list = [None] * batch.num_rows
            tagged = append_columns(batch, Dedup.fields[1:], apply_near(labels, verdicts))
            yield from split(batch, tagged, verdicts, True)


class NearDedup(beam.PTransform):
    def __init__(self, stage: Dedup, count_in: bool):
        super().__init__()
        self.stage, self.count_in = stage, count_in

    def expand(self, batches):
        o = self.stage.options
        m, shards = o.minhash, o.shards
        signer = Signer(o)
        signed = batches | "NearSign" >> beam.ParDo(_Sign(self.stage, self.count_in)).with_outputs(
            "sigs", "directory", "bands", DEAD_LETTER, main="batches")
        edges = (signed["bands"] | "NearBuckets" >> beam.GroupByKey()
                 | "NearCandidates" >> beam.FlatMap(_candidates, shards, m.verify))
        if m.verify:
            edges = ({"sig": signed["sigs"], "edges": edges} | "NearSignatures" >> beam.CoGroupByKey()
                     | "NearAttach" >> beam.FlatMap(_attach_signatures, shards)
                     | "NearPairs" >> beam.GroupByKey()
                     | "NearVerify" >> beam.FlatMap(_verify, signer.cutoff, shards))
        edges = edges | "NearOriented" >> beam.FlatMap(
            lambda item, s: _edges_by(groups.larger_first(item[1]), 0, s), shards)
        for r in range(m.rounds):
            edges = (edges | f"NearBothWays{r}" >> beam.FlatMap(_both_ways, shards)
                     | f"NearLargeGroup{r}" >> beam.GroupByKey()
                     | f"NearLargeStar{r}" >> beam.FlatMap(_large_star, shards)
                     | f"NearSmallGroup{r}" >> beam.GroupByKey()
                     | f"NearSmallStar{r}" >> beam.FlatMap(_small_star, shards))
        labels = (edges | "NearEnds" >> beam.FlatMap(_child_and_parent, shards)
                  | "NearLabelGroup" >> beam.GroupByKey()
                  | "NearLabels" >> beam.FlatMap(_labels, shards))
        routed = ((labels, signed["directory"]) | "NearLabelsAndRows" >> beam.Flatten()
                  | "NearRowGroup" >> beam.GroupByKey()
                  | "NearRoute" >> beam.FlatMap(_labels_per_batch))
        out = ({"batch": signed["batches"], "labels": routed} | "NearJoin" >> beam.CoGroupByKey()
               | "NearApply" >> beam.ParDo(_NearApply()).with_outputs(REJECTED, main=KEPT))
        return {KEPT: out[KEPT], REJECTED: out[REJECTED], DEAD_LETTER: signed[DEAD_LETTER]}
