"""Portable-runner proof: the job through Beam's Python job service and external SDK
worker processes (the Fn API protocol Spark, Flink and Dataflow use) writes the same
bytes as the DirectRunner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xlcorpus.pipelines.corpus import run_corpus

from bench.soak import free_port, wait_for

from .conftest import data_file_hashes
from .test_pipeline import demo_config


@pytest.fixture
def portable_services(tmp_path):
    # The worker pool starts SDK workers with `python` from PATH: the venv goes first.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    job_port, pool_port = free_port(), free_port()
    procs = [
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                          f"--port={job_port}"], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(tmp_path / "job_service.log", "w")),
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                          f"--service_port={pool_port}"], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(tmp_path / "worker_pool.log", "w")),
    ]
    try:
        wait_for(job_port, procs[0])
        wait_for(pool_port, procs[1])
        yield job_port, pool_port
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


@pytest.mark.slow
def test_portable_runner_gives_the_direct_runners_bytes(tmp_path, portable_services):
    job_port, pool_port = portable_services
    direct = run_corpus(demo_config(tmp_path / "direct"))
    portable = run_corpus(demo_config(tmp_path / "portable"), [
        "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
        "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"])
    assert portable["accounting"] == direct["accounting"] and portable["accounting"]["balanced"]
    hashes = data_file_hashes(tmp_path / "portable")
    assert len(hashes) >= 5  # train, validation, test, _rejected, _dead_letter
    assert hashes == data_file_hashes(tmp_path / "direct")
    # the work really ran in SDK worker processes that the external pool started
    assert "Starting worker with command" in (tmp_path / "worker_pool.log").read_text()


@pytest.mark.slow
def test_dedup_keeps_the_same_rows_on_the_portable_runner(tmp_path, portable_services):
    """Dedup's groupings run in the external SDK workers and keep exactly the rows
    (and reject with exactly the details) that the DirectRunner does."""
    from .test_dedup import _corpus, _run

    job_port, pool_port = portable_services
    glob = _corpus(tmp_path)
    direct = _run(tmp_path, glob, "direct")
    portable = _run(tmp_path, glob, "portable", [
        "--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}",
        "--environment_type=EXTERNAL", f"--environment_config=localhost:{pool_port}"])
    assert portable[1:] == direct[1:] and portable[0]["accounting"] == direct[0]["accounting"]
    assert len(direct[2]) == 5


def test_portable_jobs_are_not_cut_at_the_job_server_timeout(portable_services):
    """Beam puts --job_server_timeout (300 s) on the job's state stream: a longer job
    would fail with DEADLINE_EXCEEDED. The job sets a long one unless told otherwise."""
    from apache_beam.options.pipeline_options import PortableOptions

    from xlcorpus.pipelines.run import PORTABLE_STREAM_TIMEOUT, pipeline_options

    job_port, _ = portable_services
    args = ["--runner=PortableRunner", f"--job_endpoint=localhost:{job_port}"]
    assert pipeline_options(args).view_as(PortableOptions).job_server_timeout == PORTABLE_STREAM_TIMEOUT
    given = pipeline_options(args + ["--job_server_timeout=30"])
    assert given.view_as(PortableOptions).job_server_timeout == 30


def test_an_unreachable_job_service_fails_fast_with_its_address(monkeypatch):
    from xlcorpus.pipelines import run

    monkeypatch.setattr(run, "JOB_SERVICE_CONNECT_TIMEOUT", 1)
    port = free_port()
    with pytest.raises(ConnectionError, match=f"no Beam job service answers at --job_endpoint=localhost:{port}"):
        run.pipeline_options(["--runner=PortableRunner", f"--job_endpoint=localhost:{port}"])
