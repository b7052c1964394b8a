"""Production paths that can be exercised offline: a Dataflow job built (not submitted)
with the worker wheel attached."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from xlcorpus.pipelines.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dataflow_job_is_built_offline_with_the_worker_wheel(tmp_path, capsys):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
                   check=True)
    wheel = next(tmp_path.glob("xlcorpus-*.whl"))
    job_file = tmp_path / "job.json"
    code = main(["demo", "--input", "gs://bucket/corpus/*.jsonl.zst", "--output", "gs://bucket/datasets/demo",
                 "--set", "langid.model=gs://bucket/models/lid.176.ftz",
                 "--runner=DataflowRunner", "--dry_run=True", "--project=my-project", "--region=europe-west1",
                 "--temp_location=gs://bucket/tmp", f"--extra_package={wheel}", f"--dataflow_job_file={job_file}"])
    assert code == 0
    assert "dry run on DataflowRunner" in capsys.readouterr().err
    spec = json.loads(job_file.read_text())
    assert spec["runner"] == "DataflowRunner" and spec["job"]["type"] == "JOB_TYPE_BATCH"
    assert spec["options"]["extra_packages"] == [str(wheel)] and spec["options"]["project"] == "my-project"
    names = [t["uniqueName"] for t in spec["pipeline"]["components"]["transforms"].values()]
    for stage in ("Read", "langid", "lexfilter", "WriteDataset"):
        assert any(n == stage or n.startswith(stage + "/") for n in names), stage
