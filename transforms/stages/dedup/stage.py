"""The ``dedup`` stage: exact duplicates (normalised-text hash), then near-duplicates
(MinHash + LSH + verified candidate pairs + connected components).

Duplicates are found across every file and worker: ``transform()`` keys rows through
Beam groupings (``passes.py``). ``process()`` runs the same pure steps on one batch
(unit tests, benchmarks of the core). Kept rows carry ``dup_copies`` (exact copies of
their text, itself included) and, for a near-duplicate cluster's kept member,
``dup_cluster`` / ``dup_cluster_size``. Rejected rows: ``duplicate`` (detail: the kept
copy's id, source and line) and ``near_duplicate`` (detail: the cluster id).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xlcorpus.schemas import DEDUP_FIELDS
from xlcorpus.transforms.core.accounting import append_columns, split_rows
from xlcorpus.transforms.core.stage import Stage, StageResult
from xlcorpus.transforms.stages.dedup import groups, minhash, text
from xlcorpus.transforms.stages.dedup.options import DedupOptions, MinHashOptions, NormalizeOptions

SIZE_BUCKETS = (2, 3, 5, 9, 17, 33, 65, 129)  # cluster-size histogram: [2], [3-4], [5-8], ...


def size_bucket(size: int) -> str:
    for lo, hi in zip(SIZE_BUCKETS, SIZE_BUCKETS[1:]):
        if size < hi:
            return str(lo) if hi == lo + 1 else f"{lo}-{hi - 1}"
    return f"{SIZE_BUCKETS[-1]}+"


def cluster_id(root: int) -> str:
    return f"{root:016x}"


def exact_keys(batch: pa.RecordBatch, normalize: NormalizeOptions, key: int) -> pa.Table:
    """The rows of ``batch`` whose text normalises to something, with their text hash,
    identity, batch ``key`` and row (``groups.EXACT_KEYS``): what exact dedup groups."""
    normalized = text.normalize(batch.column("text"), normalize)
    take = pa.array(np.flatnonzero(pc.greater(pc.utf8_length(normalized), 0).to_numpy(zero_copy_only=False)))
    return pa.table({"hash": text.text_hashes(normalized.take(take)), "id": batch.column("id").take(take),
                     "source": batch.column("source").take(take), "line": batch.column("line").take(take),
                     "batch": np.full(len(take), key, np.uint64), "row": take.cast(pa.int32())},
                    schema=groups.EXACT_KEYS)


def text_keys(table: pa.Table | pa.RecordBatch, normalize: NormalizeOptions) -> pa.Table:
    """(hash, id, source, line) of the rows whose text normalises to something: what an
    incremental run keeps of the rows already in a dataset to compare new rows with."""
    t = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
    batch = pa.record_batch({c: t.column(c).combine_chunks() for c in ("text", "id", "source", "line")})
    return exact_keys(batch, normalize, 0).select(["hash", "id", "source", "line"])


def prior_key_parts(path: str, shards: int):
    """The keys of rows already in the dataset (``text_keys``, an Arrow IPC file), as
    ``groups.EXACT_KEYS`` tables per shard, marked with ``groups.PRIOR_BATCH``: in a
    group they come first, so a new copy of a text already kept is the duplicate."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    from xlcorpus.transforms.stages.dedup.keyed import by_shard

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        reader = pa.ipc.open_file(pa.BufferReader(f.read()))
    for i in range(reader.num_record_batches):
        b = reader.get_batch(i)
        t = pa.table({"hash": b.column("hash"), "id": b.column("id"), "source": b.column("source"),
                      "line": b.column("line"), "batch": np.full(b.num_rows, groups.PRIOR_BATCH, np.uint64),
                      "row": np.zeros(b.num_rows, np.int32)}, schema=groups.EXACT_KEYS)
        for shard, part in by_shard(t.column("hash").to_numpy(), shards):
            yield shard, t.take(pa.array(part))


def apply_exact(decisions: dict | None, verdicts: list) -> np.ndarray:
    """``dup_copies`` of a batch from its exact decisions (``groups.EXACT_DECISIONS`` as
    a dict of columns); duplicates get their verdict in ``verdicts``."""
    copies = np.ones(len(verdicts), np.int32)
    if decisions is not None:
        d = decisions
        for row, c, kid, ks, kl, dup in zip(d["row"], d["copies"], d["kept_id"], d["kept_source"], d["kept_line"],
                                             d["duplicate"]):
            copies[row] = c
            if dup:
                verdicts[row] = ("duplicate", {"kept": kid, "kept_source": ks, "kept_line": kl, "copies": c})
    return copies


def apply_near(labels: dict | None, verdicts: list) -> dict[str, pa.Array]:
    """``dup_cluster`` / ``dup_cluster_size`` of a batch from its cluster labels (row,
    cluster, size, root); cluster members other than the kept root get their verdict."""
    n = len(verdicts)
    cluster: list[str | None] = [None] * n
    size: list[int | None] = [None] * n
    if labels is not None:
        for row, c, s, root in zip(labels["row"], labels["cluster"], labels["size"], labels["root"]):
            if root:
                cluster[row], size[row] = cluster_id(c), s
            else:
                verdicts[row] = ("near_duplicate", {"cluster": cluster_id(c)})
    return {"dup_cluster": pa.array(cluster, pa.string()), "dup_cluster_size": pa.array(size, pa.int32())}


class Signer:
    """Normalise, shingle and sign a batch: the per-batch work of the MinHash part."""

    def __init__(self, options: DedupOptions):
        m: MinHashOptions = options.minhash
        self.normalize, self.m = options.normalize, m
        self.bands, self.rows = (m.bands, m.rows) if m.bands else minhash.choose_bands(m.threshold, m.num_perm)
        self.cutoff = m.threshold if m.verify else 0.0  # the estimate is unbiased: its mean is the Jaccard

    def sign(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(8-bit compact signatures, band keys, has-shingles mask) of the texts."""
        hashes, counts = text.shingles(text.normalize(texts, self.normalize), self.m.word_ngram, self.m.char_ngram)
        sig = minhash.signatures(hashes, counts, self.m.num_perm, self.m.seed)
        return minhash.compact(sig), minhash.band_keys(sig, self.bands, self.rows), counts > 0


class Dedup(Stage[DedupOptions]):
    name = "dedup"
    Options = DedupOptions
    fields = DEDUP_FIELDS
    dead_reason = "dedup_error"
    report_counters = True
    regroups = True  # the joins back to the batches shuffle them
    # An incremental run's keys of the rows already kept (``prior_key_parts``), set by
    # the corpus job: the exact pass then rejects new copies of them.
    prior_keys: str | None = None

    def check(self) -> None:
        if self.options.minhash.enabled:
            Signer(self.options)  # bands / rows are validated by the options; this computes the choice once

    def transform(self):
        from xlcorpus.transforms.stages.dedup.passes import DedupTransform

        return DedupTransform(self)

    # --- one batch, no Beam ---------------------------------------------------------
    def process(self, batch: pa.RecordBatch) -> StageResult:
        """Dedup within one batch with the same steps the Beam passes run per shard."""
        o, n = self.options, batch.num_rows
        verdicts: list[tuple[str, dict] | None] = [None] * n
        copies = None
        if o.exact.enabled:
            copies = apply_exact(groups.exact_decisions(exact_keys(batch, o.normalize, 0)).to_pydict(), verdicts)
        labels = None
        if o.minhash.enabled:
            live = np.flatnonzero([v is None for v in verdicts])
            signer = Signer(o)
            sig, bands, has = signer.sign(batch.column("text").take(pa.array(live)))
            live, sig, bands = live[has], sig[has], bands[has]
            nodes = text.row_keys(batch.take(pa.array(live)))
            edges = groups.candidate_edges(bands.ravel(), np.repeat(nodes, bands.shape[1]))
            order = np.argsort(nodes)
            ia, ib = (order[np.searchsorted(nodes, edges[:, i], sorter=order)] for i in (0, 1))
            edges, _ = groups.verified(edges, sig[ia], sig[ib], signer.cutoff)
            if len(edges):
                t = groups.components(edges)
                at = order[np.searchsorted(nodes, t.column("node").to_numpy(), sorter=order)]
                labels = t.append_column("row", pa.array(live[at])).to_pydict()
        columns = {"dup_copies": pa.array(copies, pa.int32()) if copies is not None else pa.nulls(n, pa.int32()),
                   **apply_near(labels, verdicts)}
        kept, rejected = split_rows(batch, append_columns(batch, self.fields, columns), verdicts, self.name)
        return StageResult(kept, rejected)

    # --- report -----------------------------------------------------------------------
    def report(self) -> dict:
        o = self.options
        entry: dict = {"normalize": o.normalize.model_dump(), "exact": o.exact.enabled}
        if o.minhash.enabled:
            s = Signer(o)
            entry["minhash"] = {"threshold": o.minhash.threshold, "num_perm": o.minhash.num_perm,
                                "bands": s.bands, "rows": s.rows, "verify_cutoff": round(s.cutoff, 4),
                                "word_ngram": o.minhash.word_ngram, "char_ngram": o.minhash.char_ngram,
                                "s_curve": minhash.s_curve(s.bands, s.rows)}
        return entry

    def counters_report(self, counters: dict[str, int]) -> dict:
        def histogram(prefix: str) -> dict[str, int]:
            found = {k.removeprefix(prefix): v for k, v in counters.items() if k.startswith(prefix)}
            order = [size_bucket(s) for s in SIZE_BUCKETS]
            return {k: found[k] for k in order if k in found}

        out = {"in": counters.get("in", 0), "kept": counters.get("kept", 0),
               "exact": {"duplicates": counters.get("duplicates", 0), "groups": counters.get("exact_groups", 0),
                         "group_sizes": histogram("exact_size.")}}
        if self.options.minhash.enabled:
            out["near"] = {"near_duplicates": counters.get("near_duplicates", 0),
                           "clusters": counters.get("clusters", 0), "cluster_sizes": histogram("cluster_size."),
                           "candidate_pairs": counters.get("candidate_pairs", 0),
                           "verified_pairs": counters.get("verified_pairs", 0),
                           "not_converged": counters.get("not_converged", 0), **self.report()["minhash"]}
        return out
