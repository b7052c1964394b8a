"""What every job (corpus, projection, finetune) does around its pipeline: check the
output, pick the runner, run into a temporary directory, count, publish.

    out = prepare_output(path, overwrite)      # fails early if it exists
    options = pipeline_options(beam_args)       # DirectRunner unless told otherwise
    tmp_dir = temporary_dir(out)
    ... build and run the pipeline, writing into tmp_dir ...
    finish_run(tmp_dir, out, report)            # report.json, balance check, publish
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections import Counter

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from xlcorpus.pipelines.html_report import report_html
from xlcorpus.transforms.stages import write as dataset_sink

log = logging.getLogger(__name__)


class AccountingError(RuntimeError):
    """Rows went missing: in != kept + rejected + dead_letter."""


class OutputExistsError(FileExistsError):
    pass


def prepare_output(out: str | None, overwrite: bool, check_exists: bool = True) -> str:
    """The absolute output path; an error when it exists and ``overwrite`` is off."""
    if not out:
        raise ValueError("no output directory: set output.path or pass --output DIR")
    out = out if "://" in out else os.path.abspath(out)
    if check_exists and (restored := dataset_sink.restore_interrupted_publish(out)):
        log.warning("restored %s from %s: the run that was replacing it died mid-publish", out, restored)
    if check_exists and dataset_sink.output_exists(out) and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    return out


# Runners that talk to a job service through the portable job API.
PORTABLE_RUNNERS = {"PortableRunner", "FlinkRunner", "SparkRunner", "PrismRunner"}
# Beam's PortableRunner also puts its --job_server_timeout (default 300 s) on the job's
# state and message streams, so any job running longer fails with DEADLINE_EXCEEDED
# (apache/beam#35867); the job runs unless told otherwise, and the connection is checked
# on its own, briefly.
PORTABLE_STREAM_TIMEOUT = 7 * 24 * 3600
JOB_SERVICE_CONNECT_TIMEOUT = 60


def pipeline_options(beam_args: list[str] | None) -> PipelineOptions:
    """Every Beam option passes through untouched; the DirectRunner is the default.
    Portable runners get a job-stream timeout that does not end long jobs (unless
    ``--job_server_timeout`` is given), after a quick check that the job service answers."""
    beam_args = list(beam_args or [])
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "DirectRunner"
    runner = standard.runner if isinstance(standard.runner, str) else type(standard.runner).__name__
    if runner.rsplit(".", 1)[-1] in PORTABLE_RUNNERS and not any(
            a.split("=", 1)[0] in ("--job_server_timeout", "--job-server-timeout") for a in beam_args):
        from apache_beam.options.pipeline_options import PortableOptions, TestOptions

        portable = options.view_as(PortableOptions)
        endpoint = portable.job_endpoint
        if endpoint and endpoint != "embed" and not options.view_as(TestOptions).dry_run:
            _check_job_service(endpoint)
        portable.job_server_timeout = PORTABLE_STREAM_TIMEOUT
    return options


def _check_job_service(endpoint: str) -> None:
    import grpc

    channel = grpc.insecure_channel(endpoint)
    try:
        grpc.channel_ready_future(channel).result(timeout=JOB_SERVICE_CONNECT_TIMEOUT)
    except grpc.FutureTimeoutError:
        raise ConnectionError(f"no Beam job service answers at --job_endpoint={endpoint} "
                              f"(waited {JOB_SERVICE_CONNECT_TIMEOUT} s)") from None
    finally:
        channel.close()


RUN_MARKER = "_xlcorpus_run.json"  # in a run's temporary directory: which process owns it


def temporary_dir(out: str, create: bool = True) -> str:
    """Where a run writes before it is published (renamed) to ``out``.

    First removes what runs that died (killed, crashed) left beside ``out``; then
    marks the new directory with this process's host and pid, so a later run can
    tell a dead run's leftovers from a live concurrent one's.
    """
    tmp_dir = f"{out}.tmp-{uuid.uuid4().hex[:8]}"
    if not create:  # a dry run touches no storage
        return tmp_dir
    clean_stale_temporaries(out)
    marker = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}
    dataset_sink.write_text(FileSystems.join(tmp_dir, RUN_MARKER), json.dumps(marker))
    return tmp_dir


@contextlib.contextmanager
def says_where_on_failure(tmp_dir: str):
    """A job that fails while running says where its partial output is."""
    try:
        yield
    except BaseException:
        log.error("the run did not finish; its partial output is in %s (the next run of the same output "
                  "removes it)", tmp_dir)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_temporaries(out: str) -> tuple[list[str], list[str]]:
    """(temporary directories of dead runs of ``out``, ones this host cannot judge).

    Local outputs only: a directory whose marker names a process on this host that no
    longer runs, or that has no marker (a run from before markers, or one killed before
    it wrote it), is stale. A marker from another host is left alone and reported.
    """
    if not dataset_sink.is_local(out):
        return [], []
    stale, unknown = [], []
    host = socket.gethostname()
    for path in sorted(glob.glob(glob.escape(out.removeprefix("file://")) + ".tmp-*")):
        try:
            with open(os.path.join(path, RUN_MARKER), encoding="utf-8") as f:
                marker = json.load(f)
        except (OSError, ValueError):
            stale.append(path)
            continue
        if marker.get("host") != host:
            unknown.append(path)
        elif not _alive(int(marker.get("pid", -1))):
            stale.append(path)
    return stale, unknown


def clean_stale_temporaries(out: str) -> list[str]:
    """Remove dead runs' temporary directories beside ``out``; says where each was."""
    stale, unknown = stale_temporaries(out)
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
        log.warning("removed %s, left by a run of %s that did not finish", path, out)
    for path in unknown:
        log.warning("%s belongs to a run on another host; left in place (remove it if that run is over)", path)
    return stale


def finish_run(tmp_dir: str, out: str, report: dict) -> dict:
    """Every job's last step: report.json and report.html into the run's temporary directory, then
    publish it to ``out``, unless rows went missing (the run then fails and leaves
    its partial output for inspection)."""
    dataset_sink.write_text(FileSystems.join(tmp_dir, "report.json"), json.dumps(report, indent=2, ensure_ascii=False))
    local = dataset_sink.is_local(tmp_dir)
    dataset_sink.write_text(FileSystems.join(tmp_dir, "report.html"),
                            report_html(tmp_dir.removeprefix("file://"), report, local=local))
    marker = FileSystems.join(tmp_dir, RUN_MARKER)
    if FileSystems.exists(marker):
        FileSystems.delete([marker])
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
