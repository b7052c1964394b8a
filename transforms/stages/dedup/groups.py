"""The grouping steps of dedup as pure functions over numpy arrays and Arrow tables
(no Beam): exact-duplicate groups, LSH candidate pairs and their verification, and
connected components by alternating large-star / small-star rounds (Kiveris et al.,
"Connected Components in MapReduce and Beyond", SoCC 2014).

``passes.py`` runs each function on one key shard of a Beam grouping; ``Dedup.process``
runs them all on one batch. Nodes are the rows' 64-bit keys (``text.row_keys``); an
edge array is (E, 2) uint64.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xlcorpus.transforms.stages.dedup.minhash import similarity

_U64 = np.uint64
EXACT_KEYS = pa.schema([("hash", pa.uint64()), ("id", pa.string()), ("source", pa.string()), ("line", pa.int64()),
                        ("batch", pa.uint64()), ("row", pa.int32())])
EXACT_DECISIONS = pa.schema([("batch", pa.uint64()), ("row", pa.int32()), ("copies", pa.int32()),
                             ("kept_id", pa.string()), ("kept_source", pa.string()), ("kept_line", pa.int64()),
                             ("duplicate", pa.bool_())])


# The batch key of rows already in the dataset (an incremental run's prior keys): no
# batch of the run has it (batch keys are hashes of (source, line)), so their
# decisions route nowhere.
PRIOR_BATCH = np.uint64(2**64 - 1)


def shard_of(keys: np.ndarray, shards: int) -> np.ndarray:
    return (keys % _U64(shards)).astype(np.int64)


# --- exact duplicates -------------------------------------------------------------------
def exact_decisions(keys: pa.Table) -> pa.Table:
    """For rows whose normalised-text hash is shared: each row's group size and the kept
    copy (a row already in the dataset, ``PRIOR_BATCH``, first; then smallest id, then
    source, then line: the same on every runner). Rows with a unique hash are not listed."""
    later = pc.not_equal(keys.column("batch"), pa.scalar(PRIOR_BATCH, pa.uint64()))
    t = keys.append_column("later", later).sort_by(
        [("hash", "ascending"), ("later", "ascending"), ("id", "ascending"), ("source", "ascending"),
         ("line", "ascending")])
    h = t.column("hash").to_numpy()
    if len(h) == 0:
        return EXACT_DECISIONS.empty_table()
    new = np.r_[True, h[1:] != h[:-1]]
    starts = np.flatnonzero(new)
    group = np.cumsum(new) - 1
    size = np.diff(np.r_[starts, len(h)])[group]
    shared = np.flatnonzero(size > 1)
    kept = pa.array(starts[group][shared])
    return pa.table({"batch": t.column("batch").take(pa.array(shared)), "row": t.column("row").take(pa.array(shared)),
                     "copies": pa.array(size[shared].astype(np.int32)),
                     "kept_id": t.column("id").take(kept), "kept_source": t.column("source").take(kept),
                     "kept_line": t.column("line").take(kept), "duplicate": pa.array(~new[shared])},
                    schema=EXACT_DECISIONS)


# --- near duplicates: LSH candidates ----------------------------------------------------
def candidate_edges(bands: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Pairs of nodes that share a band key: each member of a bucket paired with the
    bucket's smallest node (a star spans the bucket: components are what matter).
    ``bands`` and ``nodes`` are parallel 1-d arrays (one entry per node and band)."""
    if len(bands) < 2:
        return np.zeros((0, 2), _U64)
    order = np.lexsort((nodes, bands))
    b, n = bands[order], nodes[order]
    new = np.r_[True, b[1:] != b[:-1]]
    head = n[np.flatnonzero(new)][np.cumsum(new) - 1]  # smallest node of each bucket
    pair = head != n
    return unique_edges(np.stack([n[pair], head[pair]], axis=1))


def unique_edges(edges: np.ndarray) -> np.ndarray:
    if len(edges) == 0:
        return edges.reshape(0, 2).astype(_U64)
    return np.unique(edges, axis=0)


def verified(edges: np.ndarray, sig_a: np.ndarray, sig_b: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """(the candidate pairs whose signature similarity reaches ``cutoff``, their similarities)."""
    sim = similarity(sig_a, sig_b)
    ok = sim >= cutoff
    return edges[ok], sim[ok]


# --- connected components ---------------------------------------------------------------
def _neighbourhoods(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges sorted by their first node, and each edge's first-node neighbourhood minimum."""
    edges = unique_edges(edges)
    a, b = edges[:, 0], edges[:, 1]
    if len(a) == 0:
        return a, b, b
    new = np.r_[True, a[1:] != a[:-1]]
    starts = np.flatnonzero(new)
    mins = np.minimum.reduceat(b, starts)[np.cumsum(new) - 1]
    return a, b, mins


def large_star(edges: np.ndarray) -> np.ndarray:
    """Every node links its larger neighbours to the smallest node of its closed
    neighbourhood. ``edges`` holds both directions of every edge whose first node is
    in this group."""
    a, b, mins = _neighbourhoods(edges)
    m = np.minimum(mins, a)
    up = b > a
    return np.stack([b[up], m[up]], axis=1)


def small_star(edges: np.ndarray) -> np.ndarray:
    """Every node links itself and its smaller neighbours to the smallest of them.
    ``edges`` are (larger, smaller) pairs, all those whose larger node is in this group."""
    a, b, m = _neighbourhoods(edges)
    if len(a) == 0:
        return np.zeros((0, 2), _U64)
    pairs = np.concatenate([np.stack([b, m], axis=1), np.stack([a, m], axis=1)])
    return unique_edges(pairs[pairs[:, 0] != pairs[:, 1]])


def both_directions(edges: np.ndarray) -> np.ndarray:
    return np.concatenate([edges, edges[:, ::-1]]) if len(edges) else edges


def larger_first(edges: np.ndarray) -> np.ndarray:
    return np.stack([edges.max(axis=1), edges.min(axis=1)], axis=1) if len(edges) else edges


def labels(child_edges: np.ndarray, parent_edges: np.ndarray) -> tuple[pa.Table, int]:
    """Cluster labels of one node shard after the last small-star round.

    ``child_edges``: the (child, parent) pairs whose child is in this shard;
    ``parent_edges``: those whose parent is. A child is a duplicate (the cluster's
    smallest node has no parent); its cluster is its smallest parent. Roots get their
    cluster size. Returns the labels and how many nodes of this shard are both a child
    and a parent, or have two parents: not converged yet (their clusters stay split)."""
    c, p, pmin = _neighbourhoods(child_edges)
    first = np.r_[True, c[1:] != c[:-1]] if len(c) else np.zeros(0, bool)
    children, cluster = c[first], pmin[first]
    multi = int(len(c) - len(children))  # extra parents
    parents, counts = np.unique(parent_edges[:, 1], return_counts=True) if len(parent_edges) else (
        np.zeros(0, _U64), np.zeros(0, np.int64))
    inner = np.isin(parents, children)
    roots, sizes = parents[~inner], counts[~inner] + 1
    table = pa.table({"node": np.concatenate([children, roots]), "cluster": np.concatenate([cluster, roots]),
                      "size": np.concatenate([np.zeros(len(children), np.int32), sizes.astype(np.int32)]),
                      "root": np.concatenate([np.zeros(len(children), bool), np.ones(len(roots), bool)])})
    return table, multi + int(inner.sum())


def components(edges: np.ndarray, max_rounds: int = 64) -> pa.Table:
    """All of the above in one process (``Dedup.process``, tests): rounds until the
    edge set stops changing, then the labels."""
    edges = unique_edges(larger_first(edges))
    for _ in range(max_rounds):
        new = small_star(larger_first(large_star(both_directions(edges))))
        if new.shape == edges.shape and np.array_equal(new, edges):
            break
        edges = new
    table, unconverged = labels(edges, edges)
    assert unconverged == 0, "components did not converge"
    return table
