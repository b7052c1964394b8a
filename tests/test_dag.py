"""The Airflow DAG, run by Airflow itself from its own virtualenv (make airflow-env)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = Path(os.environ.get("XLCORPUS_AIRFLOW_VENV", ROOT / ".venv-airflow"))


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    if not (AIRFLOW_VENV / "bin" / "airflow").exists():
        pytest.fail(f"no Airflow virtualenv at {AIRFLOW_VENV}: run `make airflow-env` (make test does)")
    home = tmp_path_factory.mktemp("airflow_home")
    runs = tmp_path_factory.mktemp("runs")
    env = {**os.environ,
           "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "XLCORPUS_PYTHON": sys.executable,
           "XLCORPUS_OUTPUT_ROOT": str(runs),
           "PATH": f"{AIRFLOW_VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)

    def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([str(AIRFLOW_VENV / "bin" / args[0]), *args[1:]], env=env, capture_output=True,
                              text=True, timeout=timeout, cwd=home)

    migrate = run("airflow", "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    return run, runs


@pytest.mark.slow
def test_dag_imports_without_errors(airflow):
    run, _ = airflow
    code = ("from airflow.dag_processing.dagbag import DagBag; import json; "
            f"b = DagBag({str(ROOT / 'dags')!r}); "
            "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, 'dags': sorted(b.dag_ids),"
            " 'tasks': sorted(t.task_id for t in b.get_dag('xlcorpus_corpus').tasks)}))")
    proc = run("python", "-c", code)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"errors": {}, "dags": ["xlcorpus_corpus"], "tasks": ["corpus", "runs"]}


@pytest.mark.slow
def test_airflow_dags_test_writes_loadable_datasets_per_language(airflow):
    run, runs = airflow
    proc = run("airflow", "dags", "test", "xlcorpus_corpus", "2026-11-20",
               "-c", json.dumps({"languages": ["mlt", "swa"], "options": ["output.splits={train: 1}"]}))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "state=success" in proc.stdout + proc.stderr
    for lang in ("mlt", "swa"):
        out = runs / "2026-11-20" / lang
        dd = datasets.load_from_disk(str(out))
        assert list(dd) == ["train"] and len(dd["train"]) > 0
        assert set(dd["train"]["lang"]) == {lang}
        report = json.loads((out / "report.json").read_text())
        assert report["accounting"]["balanced"] and report["accounting"]["kept"] == len(dd["train"])
