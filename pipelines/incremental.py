"""Incremental runs (``output.mode: incremental``): process only the input files that
are new or changed since the output's last run, and publish the old shards of the
unchanged files together with the new ones as one dataset.

The output keeps its input state in ``_xlcorpus/state.json``: per input file its
size, modification time (object stores: their last-update time) and content hash, its
line count, and every shard the dataset holds with the file it came from. A run

    plan = plan_run(paths, out, config)        # new / changed / removed / unchanged files
    ... the pipeline over plan.process only, into tmp_dir ...
    manifest = merge(tmp_dir, out, plan, manifest_of_the_run, finalize)
    write_state(tmp_dir, plan, manifest)
    ... report, card, then publish (one rename swap: readers see the old or the new dataset)

A file whose size and modification time are unchanged is not read again; one whose
size or time changed is hashed, and reprocessed only when its content changed (a
``touch`` costs a hash, not a run). A changed file's old shards are dropped and its new
ones take their place; a file that is gone takes its rows with it, so the dataset is
always the one a full run over the current inputs would give (shards are ordered by
source file, as in a full run). Dedup's exact pass also compares the new rows with the
normalised-text hashes of the rows already kept (``_xlcorpus/dedup_keys.arrow``).

A different job configuration (stages, thresholds, splits, xlcorpus version) makes the
next run a full one: rows processed under two configurations never mix in a dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
from dataclasses import dataclass, field
from importlib.metadata import version

import pyarrow as pa
import xxhash
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from xlcorpus.transforms.stages import write as dataset_sink

log = logging.getLogger(__name__)

STATE_DIR = "_xlcorpus"
STATE = f"{STATE_DIR}/state.json"
DEDUP_KEYS = f"{STATE_DIR}/dedup_keys.arrow"
STATE_VERSION = 1
KEY_SCHEMA = pa.schema([("hash", pa.uint64()), ("id", pa.string()), ("source", pa.string()),
                        ("line", pa.int64())])
_CHUNK = 8 << 20


# --- what the inputs are now ---------------------------------------------------------
def file_facts(paths: list[str]) -> dict[str, dict]:
    """path -> {size, mtime}: one listing call per path, no read."""
    facts = {}
    for result in FileSystems.match(paths):
        for m in result.metadata_list:
            facts[m.path] = {"size": m.size_in_bytes, "mtime": m.last_updated_in_seconds}
    missing = sorted(set(paths) - set(facts))
    if missing:
        raise FileNotFoundError(f"input files vanished before the run: {missing[:5]}")
    return facts


def content_hash(path: str) -> str:
    """xxh3-128 of the file's bytes as stored (compressed files: the compressed bytes)."""
    h = xxhash.xxh3_128()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def config_key(config) -> str:
    """What makes two runs' rows comparable: the job configuration without where it reads
    and writes, and the xlcorpus version."""
    dump = config.dump()
    dump["input"].pop("paths", None)
    for key in ("path", "overwrite", "mode", "license"):
        dump["output"].pop(key, None)
    text = json.dumps({"config": dump, "xlcorpus": version("xlcorpus")}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- the plan ---------------------------------------------------------------------------
@dataclass
class Plan:
    """What an incremental run does. ``previous`` is the output's state when its shards
    of the ``unchanged`` files are reused; None for a full run (``full_reason`` says why)."""

    files: dict[str, dict]  # every current input: size, mtime, hash
    process: list[str]  # new + changed, sorted: what the pipeline reads
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    previous: dict | None = None
    full_reason: str | None = None
    config_key: str = ""

    @property
    def nothing_to_do(self) -> bool:
        return self.previous is not None and not self.process and not self.removed

    def summary(self) -> dict:
        return {"mode": "incremental", "full_run": self.previous is None, "full_reason": self.full_reason,
                "processed": self.process, "new": self.new, "changed": self.changed, "removed": self.removed,
                "unchanged": len(self.unchanged), "nothing_to_do": self.nothing_to_do}


def read_state(out: str) -> dict | None:
    path = FileSystems.join(out, STATE)
    if not FileSystems.exists(path):
        return None
    state = json.loads(dataset_sink.read_text(path))
    return state if state.get("version") == STATE_VERSION else None


def plan_run(paths: list[str], out: str, config) -> Plan:
    key = config_key(config)
    facts = file_facts(paths)
    exists = dataset_sink.output_exists(out)
    state = read_state(out) if exists else None
    reason = None
    if state is None:
        reason = ("no output yet" if not exists else
                  f"{out} has no input state (written in overwrite mode or by an older xlcorpus)")
    elif state["config_key"] != key:
        reason = "the job configuration (or the xlcorpus version) differs from the output's last run"
    if reason:
        for path in paths:
            facts[path]["hash"] = content_hash(path)
        return Plan(files=facts, process=sorted(paths), new=sorted(paths), full_reason=reason, config_key=key)

    before = state["files"]
    plan = Plan(files=facts, process=[], previous=state, config_key=key,
                removed=sorted(set(before) - set(facts)))
    for path in sorted(facts):
        now, old = facts[path], before.get(path)
        if old is None:
            now["hash"] = content_hash(path)
            plan.new.append(path)
        elif (now["size"], now["mtime"]) == (old["size"], old["mtime"]):
            now["hash"] = old["hash"]
            plan.unchanged.append(path)
        else:
            now["hash"] = content_hash(path)
            (plan.unchanged if now["hash"] == old["hash"] else plan.changed).append(path)
    plan.process = sorted(plan.new + plan.changed)
    return plan


# --- putting old and new shards together ------------------------------------------------
def _link_or_copy(src: str, dst: str) -> None:
    """A hard link where the storage has them (instant; the old output can then be
    deleted without touching the new one's files), else a copy."""
    if dataset_sink.is_local(src) and dataset_sink.is_local(dst):
        src, dst = src.removeprefix("file://"), dst.removeprefix("file://")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.link(src, dst)
            return
        except OSError:  # another filesystem, or one without hard links
            pass
    FileSystems.copy([src], [dst])


def _extension(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def merge(tmp_dir: str, out: str, plan: Plan, manifest: dict, finalize) -> dict:
    """The run's shards (already laid out in ``tmp_dir``) plus the previous output's
    shards of the unchanged files, laid out again as one dataset by the sink's own
    ``finalize`` (a ``write.FinalizeFn``); returns the combined manifest."""
    keep = set(plan.unchanged)
    staging = FileSystems.join(tmp_dir, "_shards", "merge")
    dataset_sink._ensure_dir(staging)
    infos = []
    for n, shard in enumerate(s for s in plan.previous["shards"] if s["source"] in keep):
        target = FileSystems.join(staging, f"old-{n:08d}.{_extension(shard['path'])}")
        _link_or_copy(FileSystems.join(out, shard["path"]), target)
        infos.append({**shard, "path": target})
    for n, shard in enumerate(manifest["shards"]):
        path = FileSystems.join(tmp_dir, shard["path"])
        if not shard["source"]:  # an empty split's placeholder: the layout is made again
            FileSystems.delete([path])
            continue
        target = FileSystems.join(staging, f"new-{n:08d}.{_extension(shard['path'])}")
        FileSystems.rename([path], [target])
        infos.append({**shard, "path": target})
    _clear_layout(tmp_dir)
    inputs = [i for i in plan.previous["inputs"] if i["source"] in keep] + manifest["inputs"]
    next(iter(finalize.process(infos + inputs)))
    return dataset_sink.take_manifest(tmp_dir)


def _clear_layout(tmp_dir: str) -> None:
    """Remove the run's own layout (split folders, their metadata) around the staged
    shards: the merged layout is made from nothing, so no file of the run's layout
    (say, an empty split's metadata where the old shards now fill the split) stays."""
    from xlcorpus.pipelines.run import RUN_MARKER

    root = tmp_dir.rstrip("/")
    keep = {"_shards", STATE_DIR, RUN_MARKER}
    stale = [m.path for r in FileSystems.match([root + "/**"]) for m in r.metadata_list
             if posixpath.relpath(m.path, root).split("/")[0] not in keep]
    if stale:
        FileSystems.delete(stale)
    if dataset_sink.is_local(root):  # object stores have no empty folders to leave behind
        for folder, _dirs, _files in sorted(os.walk(root.removeprefix("file://")), reverse=True):
            if posixpath.relpath(folder, root.removeprefix("file://")).split("/")[0] not in keep:
                with contextlib.suppress(OSError):  # not empty
                    os.rmdir(folder)


def write_state(tmp_dir: str, plan: Plan, manifest: dict) -> None:
    dataset_sink._ensure_dir(FileSystems.join(tmp_dir, STATE_DIR))
    state = {"version": STATE_VERSION, "config_key": plan.config_key, "files": plan.files,
             "inputs": manifest["inputs"], "shards": manifest["shards"]}
    dataset_sink.write_text(FileSystems.join(tmp_dir, STATE), json.dumps(state, sort_keys=True))


# --- exact dedup across runs --------------------------------------------------------------
def _read_table(path: str) -> pa.Table:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return pa.ipc.open_file(pa.BufferReader(f.read())).read_all()


def _write_table(path: str, table: pa.Table) -> None:
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        with pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)


def prior_dedup_keys(tmp_dir: str, out: str, plan: Plan) -> str | None:
    """The exact-dedup keys of the rows the dataset keeps from unchanged files, written
    to ``tmp_dir`` for the pipeline's exact pass to compare new rows with; None when
    there are none."""
    if plan.previous is None:
        return None
    path = FileSystems.join(out, DEDUP_KEYS)
    if not FileSystems.exists(path):
        return None
    import pyarrow.compute as pc

    keys = _read_table(path)
    keys = keys.filter(pc.is_in(keys.column("source"), pa.array(sorted(plan.unchanged), pa.string())))
    target = FileSystems.join(tmp_dir, DEDUP_KEYS)
    dataset_sink._ensure_dir(FileSystems.join(tmp_dir, STATE_DIR))
    _write_table(target, keys)
    return target


def update_dedup_keys(tmp_dir: str, run_manifest: dict, normalize, prior: str | None) -> int:
    """``_xlcorpus/dedup_keys.arrow`` = the prior keys + the keys of the rows this run
    kept (read back from its dataset shards); returns the number of keys."""
    from xlcorpus.transforms.stages.dedup.stage import text_keys

    tables = [_read_table(prior)] if prior else []
    for shard in run_manifest["shards"]:
        if shard["kind"] != dataset_sink.DATASET or not shard["rows"]:
            continue
        tables.append(text_keys(_read_shard(FileSystems.join(tmp_dir, shard["path"])), normalize))
    keys = pa.concat_tables(tables).cast(KEY_SCHEMA) if tables else KEY_SCHEMA.empty_table()
    dataset_sink._ensure_dir(FileSystems.join(tmp_dir, STATE_DIR))
    _write_table(FileSystems.join(tmp_dir, DEDUP_KEYS), keys)
    return keys.num_rows


def _read_shard(path: str) -> pa.Table:
    columns = ["text", "id", "source", "line"]
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        data = pa.BufferReader(f.read())
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(data, columns=columns)
    return pa.ipc.open_stream(data).read_all().select(columns)
