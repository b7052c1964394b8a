"""What every job (corpus, projection, finetune) does around its pipeline: check the
output, pick the runner, run into a temporary directory, count, publish.

    out = prepare_output(path, overwrite)      # fails early if it exists
    options = pipeline_options(beam_args)       # DirectRunner unless told otherwise
    tmp_dir = temporary_dir(out)
    ... build and run the pipeline, writing into tmp_dir ...
    finish_run(tmp_dir, out, report)            # report.json, balance check, publish
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from xlcorpus.transforms.stages import write as dataset_sink


class AccountingError(RuntimeError):
    """Rows went missing: in != kept + rejected + dead_letter."""


class OutputExistsError(FileExistsError):
    pass


def prepare_output(out: str | None, overwrite: bool, check_exists: bool = True) -> str:
    """The absolute output path; an error when it exists and ``overwrite`` is off."""
    if not out:
        raise ValueError("no output directory: set output.path or pass --output DIR")
    out = out if "://" in out else os.path.abspath(out)
    if check_exists and dataset_sink.output_exists(out) and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    return out


def pipeline_options(beam_args: list[str] | None) -> PipelineOptions:
    """Every Beam option passes through untouched; the DirectRunner is the default."""
    options = PipelineOptions(beam_args or [])
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = "DirectRunner"
    return options


def temporary_dir(out: str) -> str:
    """Where a run writes before it is published (renamed) to ``out``."""
    return f"{out}.tmp-{uuid.uuid4().hex[:8]}"


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


def counters(result, namespace: str) -> dict[str, int]:
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
