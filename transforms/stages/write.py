"""Dataset sink: the Hugging Face ``save_to_disk`` layout (or Parquet), written by the workers.

Workers stream their batches into Arrow IPC shards under a temporary directory
(one open writer per partition/split/source file in a bundle, never the whole
dataset in memory). A final step, fed only the small shard descriptions, gives the
shards their ``data-00000-of-0000N.arrow`` names in a deterministic order and
writes ``state.json``, ``dataset_info.json`` and ``dataset_dict.json``.

With ``format="parquet"`` the dataset's shards are Parquet files named as
``load_dataset("parquet", data_dir=DIR)`` and the Hub expect,
``data/<split>-0000i-of-0000n.parquet``, with the features in the schema's
``huggingface`` metadata (ClassLabel names included); a split without rows has no
file (the Hub's layout; `datasets` refuses an empty Parquet split). ``_rejected/``
and ``_dead_letter/`` stay Arrow datasets.

Determinism: a shard holds rows of one source file in input order, and shards are
ordered by (source, first line), so the same input and config give the same bytes
whatever the runner's parallelism.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import posixpath
import shutil
import uuid
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

DATASET, REJECTED, DEAD_LETTER = "dataset", "rejected", "dead_letter"
ARROW, PARQUET = "arrow", "parquet"  # shard formats
MANIFEST = "_manifest.json"  # the finished sink's shard list, for the driver's report
SUBDIR = {DATASET: "", REJECTED: "_rejected", DEAD_LETTER: "_dead_letter"}


# --- pure helpers ------------------------------------------------------------------
def assign_splits(ids: pa.Array, ratios: Mapping[str, float]) -> np.ndarray:
    """Split index per row from a stable hash (CRC-32) of the id: the same id always
    lands in the same split, whatever the run, runner or row order."""
    names = list(ratios)
    bounds = np.cumsum([ratios[s] for s in names], dtype=np.float64)
    bounds /= bounds[-1]
    crc = zlib.crc32
    u = np.fromiter((crc(i.encode()) for i in ids.to_pylist()), dtype=np.float64, count=len(ids)) / 2.0**32
    return np.minimum(np.searchsorted(bounds, u, side="right"), len(names) - 1)


def hf_schema(schema: pa.Schema, features: dict) -> pa.Schema:
    """The schema plus the ``huggingface`` metadata that ``save_to_disk`` embeds."""
    meta = dict(schema.metadata or {})
    meta[b"huggingface"] = json.dumps({"info": {"features": features}}).encode()
    return schema.with_metadata(meta)


def dataset_info_json(features: dict) -> str:
    return json.dumps({"citation": "", "description": "", "features": features, "homepage": "",
                       "license": ""}, indent=2)


def state_json(filenames: Sequence[str], split: str | None, fingerprint: str) -> str:
    return json.dumps({"_data_files": [{"filename": f} for f in filenames], "_fingerprint": fingerprint,
                       "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
                       "_output_all_columns": False, "_split": split}, indent=2)


def accounting_outputs(tmp_dir: str, max_rows_per_shard: int = 200_000, shard_per_batch: bool = False
                       ) -> tuple[list[SinkSpec], dict[str, dict]]:
    """The ``_rejected/`` and ``_dead_letter/`` outputs every job writes beside its
    dataset: their sink specs and their features."""
    from xlcorpus.schemas import DEAD_LETTER_SCHEMA, REJECTED_SCHEMA, output_features

    features = {REJECTED: output_features(REJECTED_SCHEMA).to_dict(),
                DEAD_LETTER: output_features(DEAD_LETTER_SCHEMA).to_dict()}
    specs = [SinkSpec(kind, tmp_dir, hf_schema(schema, features[kind]), None, None, max_rows_per_shard,
                      shard_per_batch=shard_per_batch)
             for kind, schema in ((REJECTED, REJECTED_SCHEMA), (DEAD_LETTER, DEAD_LETTER_SCHEMA))]
    return specs, features


def _source_key(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SinkSpec:
    """Everything a worker needs to write one kind of output."""

    kind: str  # dataset | rejected | dead_letter
    tmp_dir: str
    schema: pa.Schema  # with huggingface metadata
    splits: Mapping[str, float] | None  # None: one unsplit Dataset
    partition_by: str | None = None  # e.g. "lang"
    max_rows_per_shard: int = 200_000
    # A column naming each row's split (one of ``splits``), used instead of the id hash
    # when rows already belong to a split (e.g. a fine-tuning dataset made from a split
    # corpus); it is not written.
    split_column: str | None = None
    format: str = ARROW  # or PARQUET
    # True when a stage upstream regroups batches (dedup's shuffle): a bundle then holds
    # a file's batches in no fixed order, so each batch becomes its own shard (named by
    # its first line) and the bytes stay the same whatever the runner's parallelism.
    shard_per_batch: bool = False


class _Shard:
    def __init__(self, path: str, schema: pa.Schema, meta: dict | None = None, format: str = ARROW):
        self.path, self.meta = path, meta or {}
        self.file = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
        # Parquet: one row group per batch written (bounded memory); zstd, no statistics
        # that would vary with anything but the rows.
        self.writer = (pq.ParquetWriter(self.file, schema, compression="zstd") if format == PARQUET
                       else pa.ipc.new_stream(self.file, schema))
        self.rows = 0
        self.counts: Counter[str] = Counter()

    def close(self):
        self.writer.close()
        self.file.close()


class WriteShardsFn(beam.DoFn):
    """RecordBatches -> Arrow IPC shards; emits one description per shard."""

    def __init__(self, spec: SinkSpec):
        self.spec = spec
        self.rows = Metrics.counter("xlcorpus.sink", spec.kind)

    def start_bundle(self):
        self.open: dict[tuple, _Shard] = {}
        self.done: list[dict] = []
        # Each attempt at a bundle writes under names of its own: a retried bundle (its
        # worker died) never shares a file with the failed attempt, whose shards no
        # committed description names and which Finalize deletes with ``_shards/``.
        self.attempt = uuid.uuid4().hex[:8]

    def process(self, batch: pa.RecordBatch):
        if batch.num_rows == 0:
            return
        sources = batch.column("source").unique()
        if len(sources) > 1:  # readers emit one file per batch; be safe with other producers
            for source in sources.to_pylist():
                self.process(batch.filter(pc.equal(batch.column("source"), source)))
            return
        self.rows.inc(batch.num_rows)
        source = sources[0].as_py()
        # A file's batches arrive one after another (reader and stages are fused), so
        # a new source means the previous file is done: close its shards and keep the
        # number of open files small however many input files there are.
        for key in [k for k in self.open if k[2] != source]:
            self._close(key)
        tag = "" if self.spec.kind == DATASET else batch.column("stage")[0].as_py()
        for (part, split), rows in self._groups(batch):
            self._write(part, split, source, tag, rows)
        if self.spec.shard_per_batch:
            for key in list(self.open):
                self._close(key)

    def _groups(self, batch: pa.RecordBatch):
        """(partition, split) -> rows of the batch."""
        spec = self.spec
        if spec.splits is None and spec.partition_by is None:
            yield ("", ""), (batch.drop_columns([spec.split_column]) if spec.split_column else batch)
            return
        names = list(spec.splits) if spec.splits else [""]
        if spec.split_column:
            column = batch.column(spec.split_column)
            batch = batch.drop_columns([spec.split_column])
            unknown = set(column.unique().to_pylist()) - set(names)
            if unknown:
                raise ValueError(f"{spec.kind}: column {spec.split_column!r} holds splits {sorted(unknown, key=str)} "
                                 f"not among {names}")
            split_idx = np.asarray(pc.index_in(column, pa.array(names)).to_numpy(zero_copy_only=False))
        elif spec.splits:
            split_idx = assign_splits(batch.column("id"), spec.splits)
        else:
            split_idx = np.zeros(batch.num_rows, np.int64)
        parts = (pc.fill_null(batch.column(spec.partition_by), "und").to_numpy(zero_copy_only=False)
                 if spec.partition_by else np.full(batch.num_rows, "", object))
        for part in sorted(set(parts.tolist())):
            in_part = parts == part
            for s, name in enumerate(names):
                mask = in_part & (split_idx == s)
                if mask.any():
                    yield (part, name), batch.filter(pa.array(mask))

    def _write(self, part: str, split: str, source: str, tag: str, rows: pa.RecordBatch):
        key = (part, split, source, tag)
        shard = self.open.get(key)
        if shard is None:
            first = rows.column("line")[0].as_py()
            name = (f"part-{_source_key(source)}-{tag or 'kept'}-{first if first is not None else 0:012d}"
                    f"-{self.attempt}.{self.spec.format}")
            path = FileSystems.join(self.spec.tmp_dir, "_shards", self.spec.kind, part or "_", split or "_", name)
            shard = self.open[key] = _Shard(path, self.spec.schema, {
                "kind": self.spec.kind, "partition": part, "split": split, "source": source, "tag": tag,
                "first_line": first or 0, "path": path}, self.spec.format)
        shard.writer.write_batch(rows.cast(self.spec.schema) if rows.schema != self.spec.schema else rows)
        shard.rows += rows.num_rows
        if self.spec.kind == DATASET:
            if "lang" in rows.schema.names:
                shard.counts.update(dict(zip(*_value_counts(rows.column("lang")))))
        else:
            stages, reasons = rows.column("stage").to_pylist(), rows.column("reason").to_pylist()
            shard.counts.update(f"{s}:{r}" for s, r in zip(stages, reasons))
        if shard.rows >= self.spec.max_rows_per_shard:
            self._close(key)

    def _close(self, key):
        shard = self.open.pop(key)
        shard.close()
        self.done.append({**shard.meta, "rows": shard.rows, "counts": dict(shard.counts)})

    def finish_bundle(self):
        for key in list(self.open):
            self._close(key)
        for info in self.done:
            yield WindowedValue(info, GlobalWindow().max_timestamp(), [GlobalWindow()])


def _ensure_dir(directory: str):
    try:
        FileSystems.mkdirs(directory)
    except OSError:  # exists already (object stores have no directories at all)
        pass


def _value_counts(arr: pa.Array) -> tuple[list, list]:
    vc = pc.value_counts(pc.fill_null(arr, "null"))
    return vc.field("values").to_pylist(), vc.field("counts").to_pylist()


class FinalizeFn(beam.DoFn):
    """All shard descriptions -> final file names and the HF metadata files."""

    def __init__(self, tmp_dir: str, specs: Sequence[SinkSpec], features: Mapping[str, dict],
                 splits: Sequence[str]):
        self.tmp_dir, self.specs, self.features, self.splits = tmp_dir, list(specs), dict(features), list(splits)

    def process(self, infos: list[dict]):
        shards = [i for i in infos if i.get("kind") in SUBDIR]
        inputs = sorted((i for i in infos if i.get("kind") == "input"), key=lambda i: i["source"])
        layout: dict[tuple[str, str, str], list[dict]] = {}
        for info in shards:
            layout.setdefault((info["kind"], info["partition"], info["split"]), []).append(info)
        # Every split of every partition exists, if only as one empty shard.
        for spec in self.specs:
            parts = {p for (k, p, _s) in layout if k == spec.kind} or {""}
            names = list(spec.splits) if spec.splits else [""]
            for part in parts:
                for split in names:
                    layout.setdefault((spec.kind, part, split), [])
        written = []
        for (kind, part, split), group in sorted(layout.items()):
            spec = next(s for s in self.specs if s.kind == kind)
            group.sort(key=lambda i: (i["source"], i["tag"], i["first_line"]))
            parquet = spec.format == PARQUET
            directory = (FileSystems.join(self.tmp_dir, *[p for p in (part, "data") if p]) if parquet
                         else FileSystems.join(self.tmp_dir, *[p for p in (SUBDIR[kind], part, split) if p]))
            if not group and parquet:  # the Hub layout leaves an empty split out (`datasets` refuses one)
                continue
            if not group:  # an empty split still needs one (empty) Arrow file to load
                group = [self._empty_shard(spec, directory, part, split)]
            _ensure_dir(directory)
            filenames = []
            for n, info in enumerate(group):
                name = (f"{split or 'train'}-{n:05d}-of-{len(group):05d}.parquet" if parquet
                        else f"data-{n:05d}-of-{len(group):05d}.arrow")
                target = FileSystems.join(directory, name)
                FileSystems.rename([info["path"]], [target]) if info["path"] != target else None
                filenames.append(name)
                written.append({**info, "path": posixpath.relpath(target, self.tmp_dir)})
            if parquet:  # the files and their schema metadata are the whole dataset
                continue
            fingerprint = hashlib.sha256(json.dumps(
                [kind, part, split, [(i["source"], i["tag"], i["first_line"], i["rows"]) for i in group]]
            ).encode()).hexdigest()[:16]
            write_text(FileSystems.join(directory, "state.json"),
                             state_json(filenames, split or None, fingerprint))
            write_text(FileSystems.join(directory, "dataset_info.json"),
                             dataset_info_json(self.features[kind]))
        for spec in self.specs:
            if spec.splits and spec.format == ARROW:
                for part in sorted({p for (k, p, _s) in layout if k == spec.kind}):
                    directory = FileSystems.join(self.tmp_dir, *[p for p in (SUBDIR[spec.kind], part) if p])
                    write_text(FileSystems.join(directory, "dataset_dict.json"),
                                     json.dumps({"splits": list(spec.splits)}))
        FileSystems.delete([FileSystems.join(self.tmp_dir, "_shards")])
        manifest = {"inputs": inputs, "shards": written}
        write_text(FileSystems.join(self.tmp_dir, MANIFEST), json.dumps(manifest, sort_keys=True))
        yield manifest

    @staticmethod
    def _empty_shard(spec: SinkSpec, directory: str, part: str, split: str) -> dict:
        path = FileSystems.join(directory, "data-00000-of-00001.arrow")
        shard = _Shard(path, spec.schema, format=spec.format)
        # One zero-row batch: a stream with no batch at all does not load in `datasets`.
        shard.writer.write_batch(pa.RecordBatch.from_pylist([], schema=spec.schema))
        shard.close()
        return {"kind": spec.kind, "partition": part, "split": split, "source": "", "tag": "", "first_line": 0,
                "path": path, "rows": 0, "counts": {}}


class WriteDataset(beam.PTransform):
    """{kind: PCollection[RecordBatch]} (+ input file stats) -> the dataset in ``tmp_dir``.

    Output: a one-element PCollection with the manifest (inputs and shards with row
    counts), which the driver turns into report.json.
    """

    def __init__(self, tmp_dir: str, specs: Sequence[SinkSpec], features: Mapping[str, dict]):
        super().__init__()
        self.tmp_dir, self.specs, self.features = tmp_dir, list(specs), features

    def expand(self, pcolls):
        described = [pcolls[spec.kind] | f"Write {spec.kind}" >> beam.ParDo(WriteShardsFn(spec))
                     for spec in self.specs]
        described.append(pcolls["input_stats"])
        splits = next(s.splits for s in self.specs if s.kind == DATASET)
        return (tuple(described)
                | "AllShards" >> beam.Flatten()
                | "Collect" >> beam.combiners.ToList()
                | "Finalize" >> beam.ParDo(FinalizeFn(self.tmp_dir, self.specs, self.features, list(splits or []))))


# --- the driver's side: existence check, small files, publishing ---------------------------
def is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def output_exists(out: str) -> bool:
    if is_local(out):
        return os.path.exists(out.removeprefix("file://"))
    return bool([m for r in FileSystems.match([out.rstrip("/") + "/**"]) for m in r.metadata_list])


def read_text(path: str) -> str:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read().decode("utf-8")


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(text.encode("utf-8"))


def take_manifest(tmp_dir: str) -> dict:
    """Read the sink's manifest and remove it (report.json carries the same shard list)."""
    path = FileSystems.join(tmp_dir, MANIFEST)
    manifest = json.loads(read_text(path))
    FileSystems.delete([path])
    return manifest


ASIDE = ".old-"  # ``<out>.old-<id>``: the previous output while a new one is published


def publish(tmp_dir: str, out: str) -> None:
    """Move the finished temporary directory to ``out``, replacing what was there.

    Local: the previous output is renamed aside, the new one renamed into place, then
    the old one deleted: a reader finds the old dataset or the new one, never a mix
    (files it already opened stay readable), and a run killed between the two renames
    is repaired by the next one (``restore_interrupted_publish``). Object stores have
    no directories and no atomic rename: every file is renamed (copied) under the new
    prefix after the old prefix is deleted, then the temporary prefix is deleted.
    """
    if is_local(out):
        local_out = out.removeprefix("file://")
        aside = None
        if os.path.exists(local_out):
            aside = f"{local_out}{ASIDE}{uuid.uuid4().hex[:8]}"
            os.rename(local_out, aside)
        os.rename(tmp_dir.removeprefix("file://"), local_out)
        if aside:
            shutil.rmtree(aside)
        return
    if output_exists(out):
        FileSystems.delete([out])
    sources = sorted(m.path for r in FileSystems.match([tmp_dir.rstrip("/") + "/**"]) for m in r.metadata_list)
    FileSystems.rename(sources, [out.rstrip("/") + src[len(tmp_dir.rstrip("/")):] for src in sources])
    FileSystems.delete([tmp_dir])


def restore_interrupted_publish(out: str) -> str | None:
    """A run killed between ``publish``'s two renames leaves no ``out`` and the previous
    output aside: put it back (returns what it restored). Once ``out`` exists, asides are
    leftovers of a publish killed before deleting them: removed."""
    if not is_local(out):
        return None
    local_out = out.removeprefix("file://")
    asides = sorted(glob.glob(glob.escape(local_out) + ASIDE + "*"), key=os.path.getmtime)
    restored = None
    if asides and not os.path.exists(local_out):
        restored = asides.pop()
        os.rename(restored, local_out)
    for path in asides:
        shutil.rmtree(path, ignore_errors=True)
    return restored
