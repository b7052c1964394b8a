"""The corpus job: read -> the configured stages, in order -> Hugging Face dataset,
with its run report.

    stages = [registry.stage_class(name)(config.<name>) for name in config.stage_names()]
    read -> stages[0] -> stages[1] -> ... -> write

Every row leaves through exactly one door: the dataset, ``_rejected/`` or
``_dead_letter/``; ``report.json`` counts them per stage and the run fails if
``in != kept + rejected + dead_letter``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections import Counter
from importlib.metadata import version

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DebugOptions, PipelineOptions, StandardOptions, TestOptions

from xlcorpus.pipelines import incremental
from xlcorpus.pipelines.card import dataset_card
from xlcorpus.pipelines.config import JobConfig
from xlcorpus.pipelines.run import (  # noqa: F401  (AccountingError, OutputExistsError: part of this job's API)
    AccountingError,
    OutputExistsError,
    counters,
    finish_run,
    pipeline_options,
    prepare_output,
    says_where_on_failure,
    temporary_dir,
)
from xlcorpus.schemas import dataset_schema, output_features
from xlcorpus.transforms import registry
from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.core.beam import flatten_or_empty
from xlcorpus.transforms.core.progress import LiveProgress
from xlcorpus.transforms.core.stage import Stage
from xlcorpus.transforms.stages import write as dataset_sink
from xlcorpus.transforms.stages.read import documents as readers

log = logging.getLogger(__name__)


def build_stages(config: JobConfig) -> list[Stage]:
    """The stages after the reader, in order: each adds columns and may reject rows."""
    return [registry.stage_class(name)(getattr(config, name)) for name in config.stage_names()]


def sink_specs(config: JobConfig, stages: list[Stage], tmp_dir: str
               ) -> tuple[list[dataset_sink.SinkSpec], dict[str, dict]]:
    """What the sink writes: the dataset (columns of every stage) and the accounting outputs."""
    schema = dataset_schema([stage.fields for stage in stages])
    oc = config.output
    regrouped = any(stage.regroups for stage in stages)
    side_specs, features = dataset_sink.accounting_outputs(tmp_dir, oc.max_rows_per_shard, shard_per_batch=regrouped)
    features[dataset_sink.DATASET] = output_features(schema).to_dict()
    specs = [dataset_sink.SinkSpec(dataset_sink.DATASET, tmp_dir, dataset_sink.hf_schema(schema, features["dataset"]),
                                   oc.splits, oc.partition_by, oc.max_rows_per_shard, format=oc.format,
                                   shard_per_batch=regrouped), *side_specs]
    return specs, features


def finalizer(config: JobConfig, stages: list[Stage], tmp_dir: str) -> dataset_sink.FinalizeFn:
    specs, features = sink_specs(config, stages, tmp_dir)
    return dataset_sink.FinalizeFn(tmp_dir, specs, features, list(config.output.splits or []))


def build_pipeline(p: beam.Pipeline, config: JobConfig, paths: list[str], tmp_dir: str, stages: list[Stage]):
    """Compose read -> stages -> write on ``p``; returns the PCollection holding the sink manifest."""
    ic = config.input
    read = p | "Read" >> readers.ReadDocuments(paths, readers.ReaderOptions(
        format=ic.format, text_field=ic.text_field, id_field=ic.id_field, batch_size=ic.batch_size,
        max_line_bytes=ic.max_line_bytes))
    kept, rejected, dead = read[readers.DOCS], [], [read[readers.DEAD_LETTER]]
    for stage in stages:
        out = kept | stage.name >> stage.transform()
        kept = out[KEPT]
        rejected.append(out[REJECTED])
        dead.append(out[DEAD_LETTER])

    specs, features = sink_specs(config, stages, tmp_dir)
    outputs = {
        dataset_sink.DATASET: kept,
        dataset_sink.REJECTED: flatten_or_empty(p, "Rejected", rejected),
        dataset_sink.DEAD_LETTER: flatten_or_empty(p, "DeadLetter", dead),
        "input_stats": read[readers.FILE_STATS],
    }
    return outputs | "WriteDataset" >> dataset_sink.WriteDataset(tmp_dir, specs, features)


def run_corpus(config: JobConfig, beam_args: list[str] | None = None, progress=None) -> dict:
    """Run the job to completion; returns the report (also written to DIR/report.json).

    ``progress``: a rich Console to show live rows and rows/s per stage on (local
    runs only; None: no progress). With ``output.mode: incremental`` only new and
    changed input files are processed (``pipelines/incremental.py``); when there are
    none, nothing runs and the output is left as it is (the report says so)."""
    options = pipeline_options(beam_args)
    # --dry_run builds and validates the job for its runner without running it (and
    # without touching the input or output storage): e.g. a Dataflow job spec, offline.
    dry_run = bool(options.view_as(TestOptions).dry_run)
    incremental_mode = config.output.mode == "incremental" and not dry_run
    # An incremental run updates its output by design: no --overwrite needed.
    out = prepare_output(config.output.path, config.output.overwrite or incremental_mode, check_exists=not dry_run)
    if not config.input.paths:
        raise ValueError("no input: set input.paths or pass --input GLOB")
    paths = list(config.input.paths) if dry_run else readers.expand_inputs(config.input.paths)
    stages = build_stages(config)
    for stage in stages:
        stage.check()

    started = time.time()
    plan = incremental.plan_run(paths, out, config) if incremental_mode else None
    if plan is not None:
        log.info("incremental run of %s: %d new, %d changed, %d removed, %d unchanged file(s)%s", out,
                 len(plan.new), len(plan.changed), len(plan.removed), len(plan.unchanged),
                 f" (a full run: {plan.full_reason})" if plan.full_reason else "")
        if plan.nothing_to_do:
            return _unchanged_report(out, plan, started)
        paths = plan.process
    tmp_dir = temporary_dir(out, create=not dry_run)
    dedup = next((s for s in stages if s.name == "dedup"), None)
    if plan is not None and dedup is not None and dedup.options.exact.enabled:
        dedup.prior_keys = incremental.prior_dedup_keys(tmp_dir, out, plan)
    if paths:
        log.info("reading %d file(s) into %s", len(paths), out)
        p = beam.Pipeline(options=options)
        build_pipeline(p, config, paths, tmp_dir, stages)
        with says_where_on_failure(tmp_dir), _progress(progress, tmp_dir, [stage.name for stage in stages]):
            result = p.run()
            result.wait_until_finish()
        if dry_run:
            return _dry_run_report(p, result, options)
        manifest = dataset_sink.take_manifest(tmp_dir)
    else:  # an incremental run whose only change is removed files: no pipeline, a new layout
        result, manifest = None, {"inputs": [], "shards": []}
    finished = time.time()

    run_lines = sum(i["lines"] for i in manifest["inputs"])
    if plan is not None:
        if dedup is not None and dedup.options.exact.enabled:
            incremental.update_dedup_keys(tmp_dir, manifest, dedup.options.normalize, dedup.prior_keys)
        if plan.previous is not None:
            manifest = incremental.merge(tmp_dir, out, plan, manifest, finalizer(config, stages, tmp_dir))
        incremental.write_state(tmp_dir, plan, manifest)
    report = build_report(manifest, config, stages, started, finished, beam_args or [])
    for stage in stages:
        if stage.report_counters and result is not None:
            report[stage.name] = stage.counters_report(counters(result, f"xlcorpus.{stage.name}"))
    if plan is not None:
        report["rows_per_second"] = round(run_lines / max(finished - started, 1e-9), 1)  # this run's rows
        report["incremental"] = {**plan.summary(), "rows_processed": run_lines}
    dataset_sink.write_text(FileSystems.join(tmp_dir, "README.md"),
                            dataset_card(report, config.output.license, config.output.format))
    return finish_run(tmp_dir, out, report)


def _unchanged_report(out: str, plan: incremental.Plan, started: float) -> dict:
    """An incremental run with nothing new: the output's own report, untouched on disk,
    with what this run found."""
    log.info("nothing new in the input: %s is up to date (%d file(s) unchanged)", out, len(plan.unchanged))
    report = json.loads(dataset_sink.read_text(FileSystems.join(out, "report.json")))
    report["incremental"] = {**plan.summary(), "rows_processed": 0, "seconds": round(time.time() - started, 3)}
    return report


@contextlib.contextmanager
def _progress(console, tmp_dir: str, stages: list[str]):
    """Live progress while the pipeline runs, from files the workers write in a
    folder of their own (never inside the output)."""
    if console is None or not dataset_sink.is_local(tmp_dir):
        yield
        return
    folder = tempfile.mkdtemp(prefix="xlcorpus-progress-")
    try:
        with LiveProgress(folder, stages, console):
            yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def build_report(manifest: dict, config: JobConfig, stages: list[Stage], started: float, finished: float,
                 beam_args: list[str]) -> dict:
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

    per_stage_rows, rows_in = [], lines
    for name in [readers.STAGE] + [stage.name for stage in stages]:
        rej, dead = per_stage(by_kind["rejected"], name), per_stage(by_kind["dead_letter"], name)
        stage_kept = rows_in - sum(rej.values()) - sum(dead.values())
        per_stage_rows.append({"stage": name, "in": rows_in, "kept": stage_kept, "rejected": rej, "dead_letter": dead})
        rows_in = stage_kept
    rejected, dead_letter = sum(by_kind["rejected"].values()), sum(by_kind["dead_letter"].values())
    seconds = max(finished - started, 1e-9)
    report = {
        "name": config.name,
        "xlcorpus_version": version("xlcorpus"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "rows_per_second": round(lines / seconds, 1),
        "beam_args": beam_args,
        "inputs": manifest["inputs"],
        "stages": per_stage_rows,
        "accounting": {"in": lines, "kept": kept, "rejected": rejected, "dead_letter": dead_letter,
                       "balanced": lines == kept + rejected + dead_letter and rows_in == kept},
        "splits": dict(sorted(splits.items())),
        "partitions": dict(sorted(partitions.items())),
        "languages": dict(languages.most_common()),
        "models": {stage.name: entry for stage in stages if (entry := stage.report())},
        "language_distances": [],  # filled by the lexfilter stage when lexfilter.compare is set
        "config": config.dump(),
        "shards": [{k: s[k] for k in ("kind", "partition", "split", "path", "rows")} for s in shards],
    }
    for stage in stages:
        report.update(stage.report_sections())
    return report


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
