"""Airflow DAG: the xlcorpus corpus job on a schedule, one Beam run per language.

Each run updates one dataset per language in place, incrementally (``--incremental``,
``output.mode: incremental``): a night processes only the input files that are new or
changed since the night before, and publishes the old and new shards together as one
dataset (readers never see a half-updated one). Param ``mode: overwrite`` reprocesses
everything.

Airflow runs the job with the apache-beam provider's BeamRunPythonPipelineOperator
as ``<py_interpreter> -m xlcorpus.pipelines.job --config=... --output=... [options]``,
so Airflow and xlcorpus live in separate virtualenvs: ``XLCORPUS_PYTHON`` points at
the interpreter of the environment that has xlcorpus.

Settings (environment of the Airflow scheduler/workers, read when the DAG is parsed):
  XLCORPUS_PYTHON       interpreter with xlcorpus installed (default: python3)
  XLCORPUS_RUNNER       DirectRunner (default), DataflowRunner, or PortableRunner (Spark/Flink)
  XLCORPUS_JOB_ENDPOINT PortableRunner: the Spark/Flink job server, e.g. localhost:8099
  XLCORPUS_GCP_PROJECT, XLCORPUS_GCP_REGION, XLCORPUS_GCS_TEMP   DataflowRunner settings
  XLCORPUS_SCHEDULE     cron or preset (default: @daily)
DAG params (per run, e.g. ``airflow dags trigger -c '{"languages": ["mlt", "swa"]}'``):
  config       the job's YAML config (default: the bundled demo config)
  output_root  runs update <output_root>/<language or "all">
  mode         incremental (default) or overwrite
  languages    [] = one run over all languages; else one run per language, keeping only it
  options      extra ``--set`` overrides for every run, e.g. ["langid.threshold=0.6"]
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.apache.beam.operators.beam import BeamRunPythonPipelineOperator
from airflow.sdk import DAG, Param, task

RUNNER = os.environ.get("XLCORPUS_RUNNER", "DirectRunner")
PYTHON = os.environ.get("XLCORPUS_PYTHON", "python3")


def _runner_options() -> dict:
    """Options the chosen runner needs beyond the job's own."""
    if RUNNER == "PortableRunner":  # Spark or Flink job server speaking the Beam job API
        return {"job_endpoint": os.environ.get("XLCORPUS_JOB_ENDPOINT", "localhost:8099"),
                "environment_type": os.environ.get("XLCORPUS_ENVIRONMENT_TYPE", "LOOPBACK")}
    if RUNNER == "DirectRunner":
        return {"direct_running_mode": os.environ.get("XLCORPUS_DIRECT_MODE", "in_memory")}
    return {}


def _dataflow_config():
    if RUNNER != "DataflowRunner":
        return None
    from airflow.providers.google.cloud.operators.dataflow import DataflowConfiguration

    return DataflowConfiguration(job_name="xlcorpus-{{ ds_nodash }}",
                                 project_id=os.environ.get("XLCORPUS_GCP_PROJECT"),
                                 location=os.environ.get("XLCORPUS_GCP_REGION", "us-central1"),
                                 wait_until_finished=True)


with DAG(
    dag_id="xlcorpus_corpus",
    description="Build the training corpus with xlcorpus (Beam), one run per language",
    schedule=os.environ.get("XLCORPUS_SCHEDULE", "@daily"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10), "execution_timeout": timedelta(hours=6)},
    params={
        "config": Param("", type="string", description="job YAML; empty: the bundled demo config"),
        "output_root": Param(os.environ.get("XLCORPUS_OUTPUT_ROOT", "/tmp/xlcorpus-runs"), type="string"),
        "languages": Param([], type="array", description="ISO 639 codes; [] = one run over all languages"),
        "mode": Param("incremental", enum=["incremental", "overwrite"],
                      description="incremental: only new or changed input files; overwrite: all of them"),
        "options": Param([], type="array", description="extra KEY=VALUE config overrides"),
    },
    tags=["xlcorpus", "beam"],
) as dag:

    @task
    def runs(params: dict | None = None) -> list[dict]:
        """Pipeline options of each run: one per language, or one over all of them."""
        languages = params["languages"] or [None]
        out = []
        for lang in languages:
            options = {"output": f"{params['output_root']}/{lang or 'all'}", params["mode"]: True,
                       "set": list(params["options"]) + ([f"langid.keep=[{lang}]"] if lang else []),
                       **_runner_options()}
            if params["config"]:
                options["config"] = params["config"]
            if RUNNER == "DataflowRunner":
                options["temp_location"] = os.environ.get("XLCORPUS_GCS_TEMP", "")
            out.append(options)
        return out

    BeamRunPythonPipelineOperator.partial(
        task_id="corpus",
        py_file="xlcorpus.pipelines.job",
        py_options=["-m"],
        py_interpreter=PYTHON,
        runner=RUNNER,
        dataflow_config=_dataflow_config(),
    ).expand(pipeline_options=runs())
