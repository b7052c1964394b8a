"""The corpus job: read -> language ID -> lexical filter -> transliteration -> Hugging
Face dataset, with its run report (stages after the reader are switched on in config).

A readable list of steps; each stage lives in its own module under transforms/.
Every row leaves through exactly one door: the dataset, ``_rejected/`` or
``_dead_letter/``; ``report.json`` counts them per stage and the run fails if
``in != kept + rejected + dead_letter``.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from importlib.metadata import version

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, StandardOptions, TestOptions

from xlcorpus.pipelines.config import JobConfig
from xlcorpus.schemas import dataset_schema, output_features
from xlcorpus.transforms.stages.annotate import stage as annotate
from xlcorpus.transforms.stages import write as dataset_sink
from xlcorpus.transforms.stages import langid
from xlcorpus.transforms.stages.lexfilter import stage as lexfilter
from xlcorpus.transforms.stages.read import documents as readers
from xlcorpus.transforms.stages.transliterate import stage as transliterate
from xlcorpus.transforms.core.batch_fn import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.backends.lid_model import SHA256, default_model_path, sha256_of
from xlcorpus.transforms.backends.model_cache import local_copy

log = logging.getLogger(__name__)


class AccountingError(RuntimeError):
    """Rows went missing: in != kept + rejected + dead_letter."""


class OutputExistsError(FileExistsError):
    pass


def _steps(config: JobConfig, model_path: str | None) -> list[tuple[str, beam.PTransform]]:
    """The stages after the reader, in order: each adds columns and may reject rows."""
    steps: list[tuple[str, beam.PTransform]] = []
    if config.langid.enabled:
        lc = config.langid
        steps.append((langid.STAGE, langid.LanguageId(langid.LangIdOptions(
            model=model_path, top_k=lc.top_k, threshold=lc.threshold, thresholds=lc.thresholds,
            keep=tuple(lc.keep), label_only=lc.label_only, script_consistency=lc.script_consistency), model_path)))
    if config.lexfilter.enabled:
        xc = config.lexfilter
        steps.append((lexfilter.STAGE, lexfilter.LexicalFilter(lexfilter.LexFilterOptions(
            lexicon=xc.lexicon, metric=xc.metric, weighting=xc.weighting, threshold=xc.threshold,
            keep_fraction=xc.keep_fraction, langs=tuple(langid.normalize_lang_code(c) for c in xc.langs),
            max_word_distance=xc.max_word_distance, max_word_edits=xc.max_word_edits))))
    if config.transliterate.enabled:
        tc = config.transliterate
        policies = {k if k == transliterate.ANY_LANGUAGE else langid.normalize_lang_code(k): v
                    for k, v in tc.policies.items()}
        steps.append((transliterate.STAGE, transliterate.Transliterate(
            transliterate.TransliterateOptions(policies=policies, spans_column=tc.spans_column))))
    if config.annotate.enabled:  # last: it may annotate translit_text
        ac = config.annotate
        options = ac.model_dump(exclude={"enabled"})
        steps.append((annotate.STAGE, annotate.Annotate(annotate.AnnotateOptions(
            **{**options, "labels": tuple(ac.labels)}))))
    return steps


def _stages(config: JobConfig) -> list[str]:
    return [readers.STAGE] + [name for name, _ in _steps(config, None)]


def build_pipeline(p: beam.Pipeline, config: JobConfig, paths: list[str], tmp_dir: str, model_path: str | None):
    """Compose the stages on ``p``; returns the PCollection holding the sink manifest."""
    ic = config.input
    read = p | "Read" >> readers.ReadDocuments(paths, readers.ReaderOptions(
        format=ic.format, text_field=ic.text_field, id_field=ic.id_field, batch_size=ic.batch_size,
        max_line_bytes=ic.max_line_bytes))
    kept, rejected, dead = read[readers.DOCS], [], [read[readers.DEAD_LETTER]]
    steps = _steps(config, model_path)
    for name, transform in steps:
        out = kept | name >> transform
        kept = out[KEPT]
        rejected.append(out[REJECTED])
        dead.append(out[DEAD_LETTER])

    schema = dataset_schema([name for name, _ in steps])
    oc = config.output
    side_specs, features = dataset_sink.accounting_outputs(tmp_dir, oc.max_rows_per_shard)
    features[dataset_sink.DATASET] = output_features(schema).to_dict()
    specs = [dataset_sink.SinkSpec(dataset_sink.DATASET, tmp_dir, dataset_sink.hf_schema(schema, features["dataset"]),
                                   oc.splits, oc.partition_by, oc.max_rows_per_shard), *side_specs]
    outputs = {
        dataset_sink.DATASET: kept,
        dataset_sink.REJECTED: flatten_or_empty(p, "Rejected", rejected),
        dataset_sink.DEAD_LETTER: flatten_or_empty(p, "DeadLetter", dead),
        "input_stats": read[readers.FILE_STATS],
    }
    return outputs | "WriteDataset" >> dataset_sink.WriteDataset(tmp_dir, specs, features)


def _identity(path: str) -> dict:
    """Which model file a run used: its path and, when local, its SHA-256."""
    return {"path": path} | ({} if "://" in path else {"sha256": sha256_of(path)})


def flatten_or_empty(p: beam.Pipeline, label: str, pcolls: list):
    """One PCollection of all of ``pcolls`` (an empty one when there are none)."""
    if not pcolls:
        return p | f"No{label}" >> beam.Create([])
    return pcolls[0] if len(pcolls) == 1 else tuple(pcolls) | f"All{label}" >> beam.Flatten()


def run_corpus(config: JobConfig, beam_args: list[str] | None = None) -> dict:
    """Run the job to completion; returns the report (also written to DIR/report.json)."""
    out = config.output.path
    if not out:
        raise ValueError("no output directory: set output.path or pass --output DIR")
    if not config.input.paths:
        raise ValueError("no input: set input.paths or pass --input GLOB")
    out = out if "://" in out else os.path.abspath(out)
    options = PipelineOptions(beam_args or [])
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "DirectRunner"
    # --dry_run builds and validates the job for its runner without running it (and
    # without touching the input or output storage): e.g. a Dataflow job spec, offline.
    dry_run = bool(options.view_as(TestOptions).dry_run)
    if not dry_run and dataset_sink.output_exists(out) and not config.output.overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    paths = list(config.input.paths) if dry_run else readers.expand_inputs(config.input.paths)
    model_path = None
    if config.langid.enabled:
        model_path = str(config.langid.model or default_model_path())
        if not os.path.exists(model_path) and "://" not in model_path:
            raise FileNotFoundError(f"langid.model: {model_path} does not exist")

    tmp_dir = f"{out}.tmp-{uuid.uuid4().hex[:8]}"
    started = time.time()
    log.info("reading %d file(s) into %s", len(paths), out)
    p = beam.Pipeline(options=options)
    build_pipeline(p, config, paths, tmp_dir, model_path)
    result = p.run()
    result.wait_until_finish()
    finished = time.time()
    if dry_run:
        return _dry_run_report(p, result, options)

    report = build_report(dataset_sink.take_manifest(tmp_dir), config, started, finished, model_path,
                          beam_args or [])
    if config.annotate.enabled:
        report["annotate"] = _counters(result, f"xlcorpus.{annotate.STAGE}")
    return finish_run(tmp_dir, out, report)


def finish_run(tmp_dir: str, out: str, report: dict) -> dict:
    """Every job's last step: report.json into the run's temporary directory, then
    publish it to ``out``, unless rows went missing (the run then fails and leaves
    its partial output for inspection)."""
    dataset_sink.write_text(FileSystems.join(tmp_dir, "report.json"), json.dumps(report, indent=2, ensure_ascii=False))
    acct = report["accounting"]
    if not acct["balanced"]:
        counts = ", ".join(f"{k}={v}" for k, v in acct.items() if k != "balanced")
        raise AccountingError(f"rows lost: {counts}; partial output kept in {tmp_dir}")
    dataset_sink.publish(tmp_dir, out)
    return report


def _counters(result, namespace: str) -> dict[str, int]:
    """Beam counters of one namespace (e.g. LLM requests, retries, tokens, cache hits)."""
    from apache_beam.metrics.metric import MetricsFilter

    totals: Counter = Counter()
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(namespace))["counters"]
    except (NotImplementedError, AttributeError):  # runners without metrics
        return {}
    for c in found:
        totals[c.key.metric.name] += c.committed if c.committed is not None else c.attempted
    return dict(sorted(totals.items()))


def build_report(manifest: dict, config: JobConfig, started: float, finished: float,
                 model_path: str | None, beam_args: list[str]) -> dict:
    """Per-stage accounting from what was actually written, not from what was intended."""
    shards = manifest["shards"]
    lines = sum(i["lines"] for i in manifest["inputs"])
    by_kind: dict[str, Counter] = {"rejected": Counter(), "dead_letter": Counter()}
    languages: Counter = Counter()
    splits: Counter = Counter()
    partitions: Counter = Counter()
    for s in shards:
        if s["kind"] == dataset_sink.DATASET:
            languages.update(s["counts"])
            splits[s["split"]] += s["rows"]
            if s["partition"]:
                partitions[s["partition"]] += s["rows"]
        else:
            by_kind[s["kind"]].update(s["counts"])
    kept = sum(splits.values())

    def per_stage(counter: Counter, stage: str) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in sorted(counter.items()) if k.split(":", 1)[0] == stage}

    stages, rows_in = [], lines
    for stage in _stages(config):
        rej, dead = per_stage(by_kind["rejected"], stage), per_stage(by_kind["dead_letter"], stage)
        stage_kept = rows_in - sum(rej.values()) - sum(dead.values())
        stages.append({"stage": stage, "in": rows_in, "kept": stage_kept, "rejected": rej, "dead_letter": dead})
        rows_in = stage_kept
    rejected, dead_letter = sum(by_kind["rejected"].values()), sum(by_kind["dead_letter"].values())
    seconds = max(finished - started, 1e-9)
    models = {}
    if model_path:
        models["langid"] = _identity(model_path)
        models["langid"]["bundled"] = models["langid"].get("sha256") == SHA256
    if config.lexfilter.enabled:
        models["lexfilter"] = _identity(config.lexfilter.lexicon)
    if config.transliterate.enabled:
        models["transliterate"] = {"policies": config.transliterate.policies, "uroman": version("uroman")}
    if config.annotate.enabled:  # never the key, only the name of its variable
        ac = config.annotate
        models["annotate"] = {"backend": ac.backend, "model": ac.model, "task": ac.task, "base_url": ac.base_url}
    return {
        "name": config.name,
        "xlcorpus_version": version("xlcorpus"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "rows_per_second": round(lines / seconds, 1),
        "beam_args": beam_args,
        "inputs": manifest["inputs"],
        "stages": stages,
        "accounting": {"in": lines, "kept": kept, "rejected": rejected, "dead_letter": dead_letter,
                       "balanced": lines == kept + rejected + dead_letter and rows_in == kept},
        "splits": dict(sorted(splits.items())),
        "partitions": dict(sorted(partitions.items())),
        "languages": dict(languages.most_common()),
        "models": models,
        "language_distances": language_distance_report(config),
        "config": config.model_dump(mode="json"),
        "shards": [{k: s[k] for k in ("kind", "partition", "split", "path", "rows")} for s in shards],
    }


def language_distance_report(config: JobConfig) -> list[dict]:
    """Lexical distance of each ``lexfilter.compare`` language to the target lexicon,
    closest first, so a user can choose the source language to mix in."""
    xc = config.lexfilter
    if not (xc.lexicon and xc.compare):
        return []
    target = lexfilter.read_lexicon(local_copy(xc.lexicon))
    sources = {lang: lexfilter.read_lexicon(local_copy(path)) for lang, path in xc.compare.items()}
    return lexfilter.language_distances(target, sources)


def _dry_run_report(p: beam.Pipeline, result, options: PipelineOptions) -> dict:
    """What a dry run built: the runner's job (Dataflow: its job request) and the
    portable pipeline proto, written to --dataflow_job_file when given."""
    from google.protobuf.json_format import MessageToDict

    job = getattr(result, "job", None)
    proto = getattr(job, "proto_pipeline", None) or p.to_runner_api()
    spec = {"runner": options.view_as(StandardOptions).runner,
            "options": options.get_all_options(drop_default=True),
            "job": json.loads(job.json()) if job is not None else None,
            "pipeline": MessageToDict(proto)}
    target = options.view_as(DebugOptions).dataflow_job_file
    if target:
        dataset_sink.write_text(target, json.dumps(spec, indent=2, default=str))
    transforms = spec["pipeline"].get("components", {}).get("transforms", {})
    return {"dry_run": True, "runner": spec["runner"], "job_file": target,
            "transforms": sorted(t.get("uniqueName", "") for t in transforms.values())}
