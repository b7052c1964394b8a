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

import logging

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.metrics import Metrics

from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED, append_columns, dead_letter_rows, split_rows
from xlcorpus.transforms.core.beam import flatten_or_empty
from xlcorpus.transforms.core.progress import tick
from xlcorpus.transforms.stages.dedup import groups, text
from xlcorpus.transforms.stages.dedup.stage import Dedup, Signer, cluster_id, size_bucket

log = logging.getLogger(__name__)
NAMESPACE = "xlcorpus.dedup"


def _count(name: str, value: int = 1) -> None:
    if value:
        Metrics.counter(NAMESPACE, name).inc(int(value))
        if name in ("in", KEPT):
            tick(Dedup.name, name, int(value))


def _by_shard(nodes: np.ndarray, shards: int):
    """(shard, row indices) for each shard present among ``nodes``."""
    shard = groups.shard_of(nodes, shards)
    order = np.argsort(shard, kind="stable")
    cuts = np.flatnonzero(np.diff(shard[order])) + 1
    for part in np.split(order, cuts):
        if len(part):
            yield int(shard[part[0]]), part


def _batch_key(batch: pa.RecordBatch) -> int:
    """A batch's join key: its first row's key (rows are unique by source and line)."""
    return int(text.row_keys(batch.slice(0, 1))[0])


def _join_key(batch_key) -> int:
    """The Beam key of a batch: 63 bits (Beam's integer coder is signed 64-bit)."""
    return int(batch_key) >> 1


def _with_nulls(batch: pa.RecordBatch, names: tuple[str, ...]) -> pa.RecordBatch:
    fields = [f for f in Dedup.fields if f.name in names]
    return append_columns(batch, fields, {f.name: pa.nulls(batch.num_rows, f.type) for f in fields})


def _pack(batch: pa.RecordBatch) -> bytes:
    """A batch waiting for its dedup decisions, as zstd-compressed Arrow IPC: every batch
    waits in the runner's shuffle until all decisions exist, so its size is the
    stage's memory on runners that keep shuffles in memory (the DirectRunner)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as writer:
        writer.write_batch(batch)
    return sink.getvalue().to_pybytes()


def _unpack(data: bytes) -> pa.RecordBatch:
    return pa.ipc.open_stream(data).read_next_batch()


class _Keyed(beam.DoFn):
    """Shared shape of the first pass of each part: count, key the batch, catch errors."""

    def __init__(self, stage: Dedup, count_in: bool):
        self.stage, self.count_in = stage, count_in

    def process(self, batch: pa.RecordBatch):
        if self.count_in:
            _count("in", batch.num_rows)
        if batch.num_rows == 0:
            return
        try:
            side = list(self.side_outputs(batch))
        except Exception as e:  # one malformed batch must not fail the run: its rows become dead letters
            log.exception("dedup failed on a batch of %d rows", batch.num_rows)
            _count(DEAD_LETTER, batch.num_rows)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter_rows(batch, e, Dedup.name, Dedup.dead_reason))
            return
        yield _join_key(_batch_key(batch)), _pack(batch)
        for tag, value in side:
            yield beam.pvalue.TaggedOutput(tag, value)


# --- exact ------------------------------------------------------------------------------
class _ExactKeys(_Keyed):
    def side_outputs(self, batch):
        o = self.stage.options
        normalized = text.normalize(batch.column("text"), o.normalize)
        rows = np.flatnonzero(pc.greater(pc.utf8_length(normalized), 0).to_numpy(zero_copy_only=False))
        take = pa.array(rows)
        hashes = text.text_hashes(normalized.take(take))
        keys = pa.table({"hash": hashes, "id": batch.column("id").take(take),
                         "source": batch.column("source").take(take), "line": batch.column("line").take(take),
                         "batch": np.full(len(rows), _batch_key(batch), np.uint64), "row": rows.astype(np.int32)},
                        schema=groups.EXACT_KEYS)
        for shard, part in _by_shard(hashes, o.shards):
            yield "keys", (shard, keys.take(pa.array(part)))


def _exact_decide(item):
    _, tables = item
    d = groups.exact_decisions(pa.concat_tables(list(tables)))
    dup = d.column("duplicate").to_numpy(zero_copy_only=False)
    _count("duplicates", int(dup.sum()))
    _count("exact_groups", int((~dup).sum()))
    for copies in d.column("copies").to_numpy()[~dup]:
        _count(f"exact_size.{size_bucket(int(copies))}")
    batches = d.column("batch").to_numpy()
    for b in np.unique(batches):
        yield _join_key(b), d.filter(pa.array(batches == b))


class _ExactApply(beam.DoFn):
    def __init__(self, count_kept: bool):
        self.count_kept = count_kept

    def process(self, item):
        _, joined = item
        decisions = list(joined["decisions"])
        d = pa.concat_tables(decisions).to_pydict() if decisions else None
        # one batch per key: inputs are de-duplicated paths and a batch's key is its first (source, line)
        for batch in map(_unpack, joined["batch"]):
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
            yield from _split(batch, tagged, verdicts, self.count_kept)


def _split(batch, tagged, verdicts, count_kept: bool):
    kept, rejected = split_rows(batch, tagged, verdicts, Dedup.name)
    if rejected is not None:
        _count(REJECTED, rejected.num_rows)
        yield beam.pvalue.TaggedOutput(REJECTED, rejected)
    if kept.num_rows:
        if count_kept:
            _count(KEPT, kept.num_rows)
        yield kept


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


# --- near duplicates -----------------------------------------------------------------------
class _Sign(_Keyed):
    def setup(self):
        self.signer = Signer(self.stage.options)

    def side_outputs(self, batch):
        shards = self.stage.options.shards
        sig, bands, has = self.signer.sign(batch.column("text"))
        rows = np.flatnonzero(has)
        nodes = text.row_keys(batch.take(pa.array(rows)))
        sig, bands = sig[rows], bands[rows]
        key = _batch_key(batch)
        for shard, part in _by_shard(nodes, shards):  # signatures and where each node lives
            yield "sigs", (shard, ("sig", nodes[part], sig[part]))
            yield "directory", (shard, ("dir", nodes[part], np.full(len(part), key, np.uint64),
                                        rows[part].astype(np.int32)))
        flat_bands, flat_nodes = bands.ravel(), np.repeat(nodes, bands.shape[1])
        for shard, part in _by_shard(flat_bands, shards):
            yield "bands", (shard, (flat_bands[part], flat_nodes[part]))


def _edges_by(edges: np.ndarray, column: int, shards: int, tag: str | None = None):
    """``edges`` split by the shard of one endpoint: (shard, edges) or (shard, (tag, edges))."""
    if not len(edges):
        return
    for shard, part in _by_shard(edges[:, column], shards):
        yield shard, (edges[part] if tag is None else (tag, edges[part]))


def _candidates(item, shards: int, verify: bool):
    _, parts = item
    parts = list(parts)
    edges = groups.candidate_edges(np.concatenate([b for b, _ in parts]), np.concatenate([n for _, n in parts]))
    _count("candidate_pairs", len(edges))
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
    _count("verified_pairs", len(edges))
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
    _count("not_converged", unconverged)
    roots = table.column("root").to_numpy(zero_copy_only=False)
    _count("near_duplicates", int((~roots).sum()))
    _count("clusters", int(roots.sum()))
    for size in table.column("size").to_numpy()[roots]:
        _count(f"cluster_size.{size_bucket(int(size))}")
    nodes = table.column("node").to_numpy()
    for shard, part in _by_shard(nodes, shards):
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
    batches = batch_of[at]
    table = table.append_column("row", pa.array(row_of[at]))
    for b in np.unique(batches):
        yield _join_key(b), table.filter(pa.array(batches == b))


class _NearApply(beam.DoFn):
    def process(self, item):
        _, joined = item
        labels = list(joined["labels"])
        d = pa.concat_tables(labels).to_pydict() if labels else None
        for batch in map(_unpack, joined["batch"]):
            n = batch.num_rows
            verdicts: list = [None] * n
            cluster: list = [None] * n
            size: list = [None] * n
            if d is not None:
                for row, c, s, root in zip(d["row"], d["cluster"], d["size"], d["root"]):
                    if root:
                        cluster[row], size[row] = cluster_id(c), s
                    else:
                        verdicts[row] = ("near_duplicate", {"cluster": cluster_id(c)})
            tagged = append_columns(batch, Dedup.fields[1:], {"dup_cluster": pa.array(cluster, pa.string()),
                                                             "dup_cluster_size": pa.array(size, pa.int32())})
            yield from _split(batch, tagged, verdicts, True)


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
            kept = kept | "NoCopies" >> beam.Map(_with_nulls, ("dup_copies",))
        if o.minhash.enabled:
            out = kept | "Near" >> NearDedup(self.stage, count_in=not o.exact.enabled)
            kept = out[KEPT]
            rejected.append(out[REJECTED])
            dead.append(out[DEAD_LETTER])
        else:
            kept = kept | "NoClusters" >> beam.Map(_with_nulls, ("dup_cluster", "dup_cluster_size"))
        p = batches.pipeline
        return {KEPT: kept, REJECTED: flatten_or_empty(p, "DedupRejected", rejected),
                DEAD_LETTER: flatten_or_empty(p, "DedupDeadLetter", dead)}
