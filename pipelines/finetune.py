"""The fine-tuning job: a corpus (or NER) dataset -> tensor-ready columns for a GPU script.

read (a dataset directory, or raw files for LM) -> [language mixing] -> SentencePiece
-> packed causal-LM sequences (task lm) or padded token-classification windows
(task ner) -> Hugging Face dataset, with report.json holding the per-language
fertility, the mix before and after, and the packing efficiency.

The fine-tuning script then needs no preprocessing of its own::

    ds = datasets.load_from_disk(DIR)["train"].with_format("torch")
    for batch in DataLoader(ds, batch_size=8): model(**{k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import tempfile
import time
from collections import Counter
from importlib.metadata import version

import apache_beam as beam
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from xlcorpus.pipelines.finetune_config import FinetuneConfig
from xlcorpus.pipelines.run import finish_run, pipeline_options, prepare_output, says_where_on_failure, temporary_dir
from xlcorpus.schemas import finetune_schema, output_features
from xlcorpus.transforms.backends.lid_model import sha256_of
from xlcorpus.transforms.backends.model_cache import local_copy
from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.core.beam import flatten_or_empty
from xlcorpus.transforms.stages import write as dataset_sink
from xlcorpus.transforms.stages.finetune import mix
from xlcorpus.transforms.stages.finetune.common import STATS, merge_stats, stats_section
from xlcorpus.transforms.stages.finetune.stage import AlignNer, PackSequences
from xlcorpus.transforms.stages.finetune.tokenizer import fertility_from_stats, train_tokenizer
from xlcorpus.transforms.stages.read import documents as readers

log = logging.getLogger(__name__)
SPLIT_COLUMN = "split"


# --- reading a saved dataset -------------------------------------------------------------
def dataset_parts(directory: str) -> list[dict]:
    """Every Arrow file of a ``save_to_disk`` directory (a Dataset, a DatasetDict, or
    xlcorpus' per-language partitions of them), with its split, partition and features.
    ``_rejected`` and ``_dead_letter`` are not part of the dataset."""
    root = directory.rstrip("/")
    states = sorted(m.path for r in FileSystems.match([root + "/**state.json"]) for m in r.metadata_list)
    if not states and dataset_sink.is_local(root):  # some FileSystems do not match ** at the top level
        states = [os.path.join(d, "state.json") for d, _, files in os.walk(root) if "state.json" in files]
    parts = []
    for state_path in sorted(states):
        folder = posixpath.dirname(state_path)
        rel = posixpath.relpath(folder, root) if folder != root else ""
        pieces = [p for p in rel.split("/") if p and p != "."]
        if any(p.startswith("_") for p in pieces):
            continue
        state = json.loads(dataset_sink.read_text(state_path))
        info = json.loads(dataset_sink.read_text(FileSystems.join(folder, "dataset_info.json")))
        split = state.get("_split") or (pieces[-1] if pieces else "train")
        partition = pieces[0] if len(pieces) >= 2 else None
        for f in state["_data_files"]:
            parts.append({"path": FileSystems.join(folder, f["filename"]), "split": split, "partition": partition,
                          "features": info.get("features", {})})
    if not parts:
        raise FileNotFoundError(f"input.dataset: no saved dataset (state.json) under {directory}")
    return parts


def label_names(features: dict, column: str = "ner_tags") -> list[str]:
    """The ClassLabel names of a (sequence of) ClassLabel feature, or [] if it has none."""
    node = features.get(column)
    while isinstance(node, dict):
        if node.get("_type") == "ClassLabel":
            return list(node.get("names") or [])
        node = node.get("feature")
    return []


class ReadPartFn(beam.DoFn):
    """One Arrow file of a saved dataset -> the stage's input rows.

    Rows get: ``id`` (the dataset's, else split/file/row), ``text``, ``source`` (the
    file), ``line`` (row + 1), ``offset`` (row), ``meta``, ``lang`` (column, else the
    partition, else "und") and ``split``; NER rows keep ``tokens`` and ``ner_tags``.
    """

    def __init__(self, task: str, text_field: str, lang_field: str, batch_size: int):
        self.task, self.text_field, self.lang_field, self.batch_size = task, text_field, lang_field, batch_size

    def process(self, part: dict):
        path, split = part["path"], part["split"]
        row = 0
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for batch in pa.ipc.open_stream(f):
                for start in range(0, batch.num_rows, self.batch_size):
                    chunk = batch.slice(start, self.batch_size)
                    if chunk.num_rows:
                        yield self._rows(chunk, path, split, part["partition"], row)
                        row += chunk.num_rows

    def _rows(self, b: pa.RecordBatch, path: str, split: str, partition: str | None, row0: int) -> pa.RecordBatch:
        n = b.num_rows
        rows = np.arange(row0, row0 + n, dtype=np.int64)
        names = b.schema.names
        if "id" in names and pa.types.is_string(b.schema.field("id").type):
            ids = pc.fill_null(b.column("id"), "")
        else:
            ids = pa.array([f"{split}/{posixpath.basename(path)}/{r}" for r in rows.tolist()], pa.string())
        if self.task == "ner":
            tokens = b.column("tokens")
            text = pa.array([" ".join(t) if t is not None else None for t in tokens.to_pylist()], pa.string())
        else:
            text = pc.fill_null(b.column(self.text_field).cast(pa.string()), "")
        lang = (b.column(self.lang_field).cast(pa.string()) if self.lang_field in names
                else pa.array([partition or "und"] * n, pa.string()))
        cols = {"id": ids, "text": text, "source": pa.array([path] * n, pa.string()), "line": pa.array(rows + 1),
                "offset": pa.array(rows), "meta": pa.nulls(n, pa.string()), "lang": pc.fill_null(lang, "und"),
                SPLIT_COLUMN: pa.array([split] * n, pa.string())}
        if self.task == "ner":
            cols["tokens"] = b.column("tokens").cast(pa.list_(pa.string()))
            cols["ner_tags"] = b.column("ner_tags").cast(pa.list_(pa.int64()))
        return pa.RecordBatch.from_arrays(list(cols.values()), names=list(cols))


class RawRowsFn(beam.DoFn):
    """Reader batches (raw files) -> the stage's input rows: language from the record's
    ``lang_field`` (kept in ``meta``), split from a stable hash of the id."""

    def __init__(self, lang_field: str, splits: dict[str, float]):
        self.lang_field, self.splits = lang_field, dict(splits)

    def process(self, b: pa.RecordBatch):
        names = list(self.splits)
        langs = []
        for meta in b.column("meta").to_pylist():
            value = orjson.loads(meta).get(self.lang_field) if meta else None
            langs.append(str(value) if value is not None else "und")
        split = [names[i] for i in dataset_sink.assign_splits(b.column("id"), self.splits)]
        yield b.append_column("lang", pa.array(langs, pa.string())).append_column(
            SPLIT_COLUMN, pa.array(split, pa.string()))


# --- language mixing --------------------------------------------------------------------
def count_languages(batch: pa.RecordBatch, splits: tuple[str, ...]) -> dict[str, int]:
    """Rows per language in the splits being mixed, as ``before|lang`` counters."""
    mixed = batch.filter(pc.is_in(batch.column(SPLIT_COLUMN), pa.array(list(splits), pa.string())))
    return {f"before|{k}": v for k, v in Counter(mixed.column("lang").to_pylist()).items()}


def mixing_rates(stats: dict[str, int], temperature: float | None, ratios: dict[str, float], total: int | None,
                 seed: int) -> dict[str, float]:
    """Copies per row for each language (may be < 1 or > 1), from the counts and the rule."""
    counts = stats_section(stats, "before")
    if not counts:
        return {}
    if temperature is not None:
        weights = mix.temperature_weights(counts, temperature)
    else:
        missing = sorted(set(ratios) - set(counts))
        if missing:
            raise ValueError(f"mix.ratios names languages with no rows in the mixed splits: {missing} "
                             f"(languages present: {sorted(counts)})")
        weights = mix.explicit_weights({lang: ratios.get(lang, 0.0) for lang in counts})
    plan = mix.sample_plan(counts, weights, total, seed)
    return {lang: plan[lang] / counts[lang] for lang in counts}


class MixFn(beam.DoFn):
    """Rows of the mixed splits are taken ``repeat_counts`` times (0, 1 or more), decided
    by a seeded hash of each id: the same rows on any runner; extra copies get ``~k`` ids."""

    def __init__(self, splits: tuple[str, ...], seed: int):
        self.splits, self.seed = splits, seed

    def process(self, batch: pa.RecordBatch, rates: dict[str, float]):
        in_mix = np.asarray(pc.is_in(batch.column(SPLIT_COLUMN), pa.array(list(self.splits), pa.string()))
                            .to_numpy(zero_copy_only=False), dtype=bool)
        copies = np.ones(batch.num_rows, dtype=np.int64)
        langs = np.asarray(batch.column("lang").to_pylist(), dtype=object)
        ids = batch.column("id").to_pylist()
        for lang in sorted(set(langs[in_mix].tolist())):
            rows = np.flatnonzero(in_mix & (langs == lang))
            copies[rows] = mix.repeat_counts([ids[i] for i in rows], lang, rates.get(lang, 1.0), self.seed)
        take = np.repeat(np.arange(batch.num_rows), copies)
        out = batch.take(pa.array(take))
        if (copies > 1).any():  # copy k of a row is id~k, so ids stay unique
            k = np.concatenate([np.arange(c) for c in copies]) if len(copies) else np.zeros(0, np.int64)
            new_ids = [i if j == 0 else f"{i}~{j}" for i, j in zip(out.column("id").to_pylist(), k.tolist())]
            out = out.set_column(0, "id", pa.array(new_ids, pa.string()))
        after = Counter(np.asarray(out.column("lang").to_pylist(), dtype=object)[
            np.repeat(in_mix, copies)].tolist())
        if out.num_rows:
            yield out
        yield beam.pvalue.TaggedOutput(STATS, {f"after|{k}": v for k, v in after.items()})


# --- the job ----------------------------------------------------------------------------
TOKENIZER = "tokenizer/tokenizer.model"  # where the output keeps the tokenizer that made its ids


def prepare_tokenizer(config: FinetuneConfig, tmp_dir: str) -> tuple[str, bool]:
    """The configured tokenizer, or one trained on the input (seeded sample), stored
    in the output as ``TOKENIZER`` (that copy is what the workers load); returns
    (its path under ``tmp_dir``, trained?)."""
    tc = config.tokenizer
    with tempfile.TemporaryDirectory() as work:
        if tc.model:
            local = local_copy(tc.model)
            if not os.path.exists(local):
                raise FileNotFoundError(f"tokenizer.model: {tc.model} does not exist")
        else:
            local = train_tokenizer(_input_texts(config), os.path.join(work, "tokenizer"),
                                    vocab_size=tc.vocab_size, model_type=tc.model_type,
                                    character_coverage=tc.character_coverage, sample_lines=tc.sample_lines,
                                    seed=tc.seed, hard_vocab_limit=False, pad_id=3)
        target = FileSystems.join(tmp_dir, TOKENIZER)
        with open(local, "rb") as src, FileSystems.create(
                target, compression_type=CompressionTypes.UNCOMPRESSED) as dst:
            dst.write(src.read())
    return target, not tc.model


def _input_texts(config: FinetuneConfig):
    """The input's texts, streamed, for training a tokenizer (the driver reads them once)."""
    if config.input.dataset:
        reader = ReadPartFn(config.task, config.input.text_field, config.input.lang_field, 10_000)
        for part in dataset_parts(config.input.dataset):
            for batch in reader.process(part):
                yield from (t for t in batch.column("text").to_pylist() if t)
    else:
        from xlcorpus.pipelines.lexicon import corpus_texts

        yield from corpus_texts(config.input.paths, readers.ReaderOptions(text_field=config.input.text_field))


def _features(schema: pa.Schema, names: list[str]) -> dict:
    features = output_features(schema).to_dict()
    if "ner_tags" in features:
        features["ner_tags"] = {"feature": {"names": list(names), "_type": "ClassLabel"}, "_type": "List"}
    return features


def build_finetune_pipeline(p: beam.Pipeline, config: FinetuneConfig, stage: PackSequences | AlignNer,
                            tmp_dir: str, split_names: list[str]):
    """Compose the job on ``p``; returns (manifest, stats) PCollections."""
    ic = config.input
    dead = []
    if ic.dataset:
        rows = (p | "Parts" >> beam.Create(dataset_parts(ic.dataset))
                | "Spread" >> beam.Reshuffle()
                | "ReadParts" >> beam.ParDo(ReadPartFn(config.task, ic.text_field, ic.lang_field, ic.batch_size)))
        input_stats = p | "NoInputStats" >> beam.Create([])
    else:
        read = p | "Read" >> readers.ReadDocuments(readers.expand_inputs(ic.paths), readers.ReaderOptions(
            format=ic.format, text_field=ic.text_field, batch_size=ic.batch_size))
        rows = read[readers.DOCS] | "LangAndSplit" >> beam.ParDo(RawRowsFn(ic.lang_field, ic.splits))
        dead.append(read[readers.DEAD_LETTER])
        input_stats = read[readers.FILE_STATS]
    stats = [rows | "CountIn" >> beam.Map(lambda b: {"in": b.num_rows})]

    mc = config.mix
    if mc.enabled:
        splits = tuple(mc.splits)
        before = (rows | "CountLanguages" >> beam.Map(count_languages, splits)
                  | "SumLanguages" >> beam.CombineGlobally(merge_stats))
        rates = before | "Rates" >> beam.Map(mixing_rates, mc.temperature, dict(mc.ratios), mc.total, mc.seed)
        mixed = rows | "Mix" >> beam.ParDo(MixFn(splits, mc.seed), beam.pvalue.AsSingleton(rates)).with_outputs(
            STATS, main="rows")
        rows = mixed["rows"]
        stats += [before, mixed[STATS]]
    stats.append(rows | "CountMixed" >> beam.Map(lambda b: {"mixed": b.num_rows}))

    out = rows | ("Pack" if config.task == "lm" else "AlignNer") >> stage.transform()
    kept, rejected = out[KEPT], out[REJECTED]
    if DEAD_LETTER in out:  # packing has none: a document it cannot pack has no pieces (rejected)
        dead.append(out[DEAD_LETTER])
    stats.append(out[STATS])

    schema = finetune_schema(config.task, config.seq_len if config.task == "lm" else config.max_length)
    shard_rows = config.output.max_rows_per_shard
    side_specs, features = dataset_sink.accounting_outputs(tmp_dir, shard_rows)
    features[dataset_sink.DATASET] = _features(schema, list(stage.options.label_names))
    specs = [dataset_sink.SinkSpec(dataset_sink.DATASET, tmp_dir, dataset_sink.hf_schema(schema, features["dataset"]),
                                   {s: 1.0 for s in split_names}, None, shard_rows, split_column=SPLIT_COLUMN),
             *side_specs]
    outputs = {dataset_sink.DATASET: kept, dataset_sink.REJECTED: rejected,
               dataset_sink.DEAD_LETTER: flatten_or_empty(p, "DeadLetter", dead), "input_stats": input_stats}
    manifest = outputs | "WriteDataset" >> dataset_sink.WriteDataset(tmp_dir, specs, features)
    total = tuple(stats) | "AllStats" >> beam.Flatten() | "SumStats" >> beam.CombineGlobally(merge_stats)
    return manifest, total


class _WriteStats(beam.DoFn):
    def __init__(self, path: str):
        self.path = path

    def process(self, stats: dict):
        dataset_sink.write_text(self.path, json.dumps(stats, sort_keys=True))


def run_finetune(config: FinetuneConfig, beam_args: list[str] | None = None) -> dict:
    """Run the job to completion; returns the report (also written to DIR/report.json)."""
    out = prepare_output(config.output.path, config.output.overwrite, check_exists=False)
    if not (config.input.dataset or config.input.paths):
        raise ValueError("no input: set input.dataset (a saved dataset) or input.paths (raw files)")
    prepare_output(out, config.output.overwrite)  # fails if it exists, after the input check as before
    options = pipeline_options(beam_args)

    if config.input.dataset:
        parts = dataset_parts(config.input.dataset)
        split_names = sorted({p["split"] for p in parts}, key=lambda s: (s != "train", s))
        features = parts[0]["features"]
        needed = ["tokens", "ner_tags"] if config.task == "ner" else [config.input.text_field]
        missing = [c for c in needed if c not in features]
        if missing:
            raise ValueError(f"input.dataset {config.input.dataset}: no column(s) {missing} "
                             f"(it has {sorted(features)})")
    else:
        split_names, features = list(config.input.splits), {}
    names = list(config.label_names) or label_names(features)
    if config.task == "ner" and not names:
        raise ValueError("task ner: the input's ner_tags carry no ClassLabel names; set label_names")

    tmp_dir = temporary_dir(out)
    started = time.time()
    tokenizer, trained = prepare_tokenizer(config, tmp_dir)
    stage = (PackSequences if config.task == "lm" else AlignNer)(config.stage_options(label_names=names),
                                                                  tokenizer=tokenizer)
    stage.check()
    p = beam.Pipeline(options=options)
    manifest, stats = build_finetune_pipeline(p, config, stage, tmp_dir, split_names)
    stats_path = FileSystems.join(tmp_dir, "_stats.json")
    _ = stats | "WriteStats" >> beam.ParDo(_WriteStats(stats_path))
    with says_where_on_failure(tmp_dir):
        p.run().wait_until_finish()
    finished = time.time()

    manifest = dataset_sink.take_manifest(tmp_dir)
    totals = json.loads(dataset_sink.read_text(stats_path))
    FileSystems.delete([stats_path])
    report = build_finetune_report(config, manifest, totals, tokenizer, trained, names, started, finished,
                                   beam_args or [])
    return finish_run(tmp_dir, out, report)


def build_finetune_report(config: FinetuneConfig, manifest: dict, stats: dict, tokenizer: str, trained: bool,
                          names: list[str], started: float, finished: float, beam_args: list[str]) -> dict:
    shards = manifest["shards"]
    rejected: Counter = Counter()
    dead: Counter = Counter()
    rows_out: Counter = Counter()
    for s in shards:
        if s["kind"] == dataset_sink.DATASET:
            rows_out[s["split"]] += s["rows"]
        else:
            (rejected if s["kind"] == dataset_sink.REJECTED else dead).update(s["counts"])
    read_dead = sum(v for k, v in dead.items() if k.startswith(f"{readers.STAGE}:"))
    lines = sum(i["lines"] for i in manifest["inputs"])
    rows_in = stats.get("in", 0)
    mixed = stats.get("mixed", rows_in)
    documents = sum(stats_section(stats, "documents").values())
    n_rejected, n_dead = sum(rejected.values()), sum(dead.values())
    # every row that reached the tokenizer is packed/windowed, rejected or dead-lettered
    balanced = mixed == documents + n_rejected + (n_dead - read_dead) and (
        not config.input.paths or lines == rows_in + read_dead)
    seqs, tokens = stats_section(stats, "sequences"), stats_section(stats, "tokens")
    width = config.seq_len
    packing = None
    if config.task == "lm":
        slots = sum(seqs.values()) * width
        packing = {"seq_len": width, "sequences": sum(seqs.values()), "tokens": sum(tokens.values()),
                   "efficiency": round(sum(tokens.values()) / slots, 6) if slots else 1.0,
                   "per_language": {lang: {"sequences": n, "efficiency": round(tokens.get(lang, 0) / (n * width), 6)}
                                    for lang, n in sorted(seqs.items())}}
    before, after = stats_section(stats, "before"), stats_section(stats, "after")
    seconds = max(finished - started, 1e-9)
    return {
        "name": config.name,
        "task": config.task,
        "xlcorpus_version": version("xlcorpus"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "beam_args": beam_args,
        "tokenizer": {"path": TOKENIZER, "source": config.tokenizer.model, "sha256": sha256_of(local_copy(tokenizer)),
                      "trained_on_input": trained},
        "accounting": {"in": rows_in, "after_mix": mixed, "tokenized": documents, "rejected": n_rejected,
                       "dead_letter": n_dead, "balanced": balanced},
        "rejected": dict(sorted(rejected.items())),
        "dead_letter": dict(sorted(dead.items())),
        "fertility": fertility_from_stats(stats),
        "mix": ({"rule": {"temperature": config.mix.temperature} if config.mix.temperature is not None
                 else {"ratios": config.mix.ratios}, "splits": config.mix.splits,
                 "before": before, "after": after,
                 "share_before": _shares(before), "share_after": _shares(after)} if config.mix.enabled else None),
        "packing": packing,
        "ner": ({"label_names": names, "max_length": config.max_length, "stride": config.stride,
                 "windows": sum(seqs.values())} if config.task == "ner" else None),
        "rows": dict(rows_out),
        "config": config.model_dump(mode="json"),
        "shards": [{k: s[k] for k in ("kind", "split", "path", "rows")} for s in shards],
    }


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(v / total, 6) for k, v in sorted(counts.items())} if total else {}
