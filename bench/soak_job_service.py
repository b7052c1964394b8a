"""Beam's Python job service (``local_job_service_main``), with the SDK worker count
taken from the job's ``--direct_num_workers``.

The job service's FnApiRunner reads that option only when it builds the pipeline
itself (``run_pipeline``); a job submitted through the job API always got one
worker. The soak needs two workers from the external pool, so this entry point sets
the runner's worker count from the submitted options and then runs the stock service.

    python bench/soak_job_service.py --port PORT
"""

from __future__ import annotations

import sys

from apache_beam.options.pipeline_options import DirectOptions
from apache_beam.runners.portability import local_job_service_main
from apache_beam.runners.portability.fn_api_runner import fn_runner

_run_via_runner_api = fn_runner.FnApiRunner.run_via_runner_api


def _with_workers(self, pipeline_proto, options):
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers:
        self._num_workers = int(workers)  # options sent through the job API arrive as strings
    return _run_via_runner_api(self, pipeline_proto, options)


fn_runner.FnApiRunner.run_via_runner_api = _with_workers

if __name__ == "__main__":
    local_job_service_main.run(sys.argv[1:])
