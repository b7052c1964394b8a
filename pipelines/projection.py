"""The projection job: NER input -> label projection -> a target-language NER dataset.

    read (CoNLL / JSONL / HF dataset) -> ProjectLabels -> sink

The dataset's ``ner_tags`` are ``Sequence(ClassLabel(names=[O, B-x, I-x, ...]))``;
rejected rows (no span, conflict, count mismatch, ...) go to ``_rejected/``,
unreadable or inconsistent records to ``_dead_letter/``, and ``report.json`` counts
them with the retention rate per method and per reason. ``in == kept + rejected +
dead_letter`` is checked before the output is published.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version

import apache_beam as beam

from xlcorpus.pipelines.run import finish_run, pipeline_options, prepare_output, temporary_dir
from xlcorpus.schemas import PROJECTION_SCHEMA, output_features
from xlcorpus.transforms.backends.mt import MTOptions
from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.core.beam import flatten_or_empty
from xlcorpus.transforms.stages import write as dataset_sink
from xlcorpus.transforms.stages.project.markers import iob2_names
from xlcorpus.transforms.stages.project.options import ProjectionOptions
from xlcorpus.transforms.stages.project.stage import ProjectLabels
from xlcorpus.transforms.stages.read import ner as ner_inputs
from xlcorpus.transforms.stages.read.documents import expand_inputs

log = logging.getLogger(__name__)


@dataclass
class ProjectionJob:
    """What to read, where to write, and the stage's options (models included)."""

    inputs: list[str]
    output: str
    projection: ProjectionOptions = field(default_factory=ProjectionOptions)
    reader: ner_inputs.NerReaderOptions = field(default_factory=ner_inputs.NerReaderOptions)
    splits: dict[str, float] | None = None  # None: one Dataset
    overwrite: bool = False


def features_for(names: list[str]) -> dict:
    """Features of the projected dataset, with ``ner_tags`` as a ClassLabel sequence."""
    import datasets

    features = output_features(PROJECTION_SCHEMA)
    features["ner_tags"] = datasets.Sequence(datasets.ClassLabel(names=list(names)))
    return features.to_dict()


def label_names(job: ProjectionJob, paths: list[str]) -> list[str]:
    """IOB2 names: given, or an HF input's ClassLabel names, or the entity types found."""
    po = job.projection
    if po.label_names or po.labels:
        return po.iob2_names()
    fmt = ner_inputs.detect_ner_format(paths[0], job.reader.format) if paths else "jsonl"
    if fmt == "hf":
        import datasets

        loaded = datasets.load_from_disk(paths[0])
        ds = next(iter(loaded.values())) if isinstance(loaded, datasets.DatasetDict) else loaded
        return ner_inputs.hf_label_names(ds)
    if po.mode == "translate-test":
        raise ValueError("translate-test: give the predictor's entity types (--labels)")
    return iob2_names(ner_inputs.label_types(paths, job.reader))


def build_pipeline(p: beam.Pipeline, job: ProjectionJob, paths: list[str], tmp_dir: str, names: list[str]):
    read = p | "ReadNer" >> ner_inputs.ReadNer(paths, job.reader)
    opts = job.projection
    if not opts.label_names:
        opts = opts.model_copy(update={"label_names": tuple(names)})
    stage = ProjectLabels(opts)
    stage.check()
    out = read[ner_inputs.DOCS] | "ProjectLabels" >> stage.transform()
    side_specs, features = dataset_sink.accounting_outputs(tmp_dir)
    features[dataset_sink.DATASET] = features_for(names)
    specs = [dataset_sink.SinkSpec(dataset_sink.DATASET, tmp_dir,
                                   dataset_sink.hf_schema(PROJECTION_SCHEMA, features["dataset"]), job.splits),
             *side_specs]
    dead = flatten_or_empty(p, "DeadLetter", [read[ner_inputs.DEAD_LETTER], out[DEAD_LETTER]])
    return ({dataset_sink.DATASET: out[KEPT], dataset_sink.REJECTED: out[REJECTED],
             dataset_sink.DEAD_LETTER: dead, "input_stats": read[ner_inputs.FILE_STATS]}
            | "WriteDataset" >> dataset_sink.WriteDataset(tmp_dir, specs, features))


def expand_paths(patterns: list[str]) -> list[str]:
    """Dataset directories as given, file globs expanded by the document reader's rule."""
    dirs = [x for x in patterns if os.path.isdir(x)]
    return sorted(set(dirs) | set(expand_inputs([x for x in patterns if not os.path.isdir(x)])))


def run_projection(job: ProjectionJob, beam_args: list[str] | None = None) -> dict:
    """Run the job; returns the report (also written to OUTPUT/report.json)."""
    out = prepare_output(job.output, job.overwrite)
    mt = job.projection.mt
    if mt is None:
        raise ValueError("projection.mt: no translation model given")
    if not os.path.isdir(mt.model):
        raise FileNotFoundError(f"--model: {mt.model} is not a CTranslate2 model directory")
    paths = expand_paths(job.inputs)
    names = label_names(job, paths)
    options = pipeline_options(beam_args)
    tmp_dir = temporary_dir(out)
    started = time.time()
    p = beam.Pipeline(options=options)
    build_pipeline(p, job, paths, tmp_dir, names)
    p.run().wait_until_finish()
    finished = time.time()
    report = build_report(dataset_sink.take_manifest(tmp_dir), job, names, started, finished)
    return finish_run(tmp_dir, out, report)


def build_report(manifest: dict, job: ProjectionJob, names: list[str], started: float, finished: float) -> dict:
    records = sum(i["lines"] for i in manifest["inputs"])
    kept = 0
    rejected: Counter = Counter()
    dead: Counter = Counter()
    for s in manifest["shards"]:
        if s["kind"] == dataset_sink.DATASET:
            kept += s["rows"]
        else:
            (rejected if s["kind"] == dataset_sink.REJECTED else dead).update(s["counts"])

    def stage(counter: Counter, name: str) -> dict[str, int]:
        return {k.split(":", 1)[1]: v for k, v in sorted(counter.items()) if k.split(":", 1)[0] == name}

    read_dead = stage(dead, ner_inputs.STAGE)
    project_in = records - sum(read_dead.values())
    reasons = stage(rejected, ProjectLabels.name)
    method = job.projection.method
    seconds = max(finished - started, 1e-9)
    n_rej, n_dead = sum(rejected.values()), sum(dead.values())
    return {
        "xlcorpus_version": version("xlcorpus"),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(seconds, 3),
        "sentences_per_second": round(project_in / seconds, 2),
        "inputs": manifest["inputs"],
        "label_names": names,
        "stages": [
            {"stage": ner_inputs.STAGE, "in": records, "kept": project_in, "rejected": {}, "dead_letter": read_dead},
            {"stage": ProjectLabels.name, "in": project_in, "kept": kept, "rejected": reasons,
             "dead_letter": stage(dead, ProjectLabels.name)},
        ],
        "retention": {method: {
            "mode": job.projection.mode, "in": project_in, "kept": kept,
            "rate": round(kept / project_in, 4) if project_in else None,
            "rejected_by_reason": {r: {"rows": n, "rate": round(n / project_in, 4)} for r, n in reasons.items()},
        }},
        "accounting": {"in": records, "kept": kept, "rejected": n_rej, "dead_letter": n_dead,
                       "balanced": records == kept + n_rej + n_dead},
        "models": ProjectLabels(job.projection).report(),
        "projection": job.projection.model_dump(),
        "shards": [{k: s[k] for k in ("kind", "partition", "split", "path", "rows")} for s in manifest["shards"]],
    }


def run_from_args(args, beam_args: list[str], console) -> int:
    """``xlcorpus project``: the parsed arguments -> a job, run, summarised on ``console``."""
    def mt(model, reverse=False):
        src, tgt = (args.tgt_lang, args.src_lang) if reverse else (args.src_lang, args.tgt_lang)
        return MTOptions(model, args.convention, src, tgt, sp_model=None if reverse else args.sp_model,
                         device=args.device, compute_type=args.compute_type, beam_size=args.beam_size,
                         max_batch_tokens=args.max_batch_tokens, source_eos=not args.no_source_eos)

    labels = tuple(x.strip() for x in args.labels.split(",") if x.strip()) if args.labels else ()
    # constrained-search knobs, taken when the command line has them (--bounds, --batch-tokens)
    search = {k: getattr(args, k) for k in ("bounds", "batch_tokens") if getattr(args, k, None) is not None}
    job = ProjectionJob(
        inputs=args.input, output=args.output, overwrite=args.overwrite,
        projection=ProjectionOptions(method=args.method, mode=args.mode, labels=labels, exhaustive=args.exhaustive,
                                     **search, mt=mt(args.model),
                                     reverse_mt=mt(args.reverse_model, True) if args.reverse_model else None,
                                     predictor=args.predictor),
        reader=ner_inputs.NerReaderOptions(format=args.format, require_spans=args.mode == "translate-train"))
    with console.status(f"projecting labels ({args.method}, {args.mode})..."):
        report = run_projection(job, beam_args)
    a, r = report["accounting"], report["retention"][args.method]
    console.print(f"in {a['in']} = kept {a['kept']} + rejected {a['rejected']} + dead-letter {a['dead_letter']}; "
                  f"retention {r['rate']}; rejected by reason: {r['rejected_by_reason']}")
    console.print(f"load it: datasets.load_from_disk({args.output!r}); report: {args.output}/report.json")
    return 0
