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
        out = runs / lang
        dd = datasets.load_from_disk(str(out))
        assert list(dd) == ["train"] and len(dd["train"]) > 0
        assert set(dd["train"]["lang"]) == {lang}
        report = json.loads((out / "report.json").read_text())
        assert report["accounting"]["balanced"] and report["accounting"]["kept"] == len(dd["train"])


@pytest.mark.slow
def test_the_nightly_run_is_incremental_and_processes_only_the_new_file(airflow, tmp_path, demo_jsonl):
    run, runs = airflow
    folder = tmp_path / "in"
    folder.mkdir()
    lines = demo_jsonl.read_text(encoding="utf-8").splitlines()
    for n in range(3):
        (folder / f"day-{n}.jsonl").write_text("\n".join(lines[n::4]) + "\n", encoding="utf-8")
    config = tmp_path / "job.yaml"
    config.write_text(json.dumps({"stages": ["langid"], "input": {"paths": [str(folder / "*.jsonl")]},
                                  "output": {"splits": {"train": 1}}}))
    conf = json.dumps({"config": str(config), "output_root": str(runs / "nightly")})
    first = run("airflow", "dags", "test", "xlcorpus_corpus", "2026-11-21", "-c", conf)
    assert first.returncode == 0, (first.stdout + first.stderr)[-5000:]
    report = json.loads((runs / "nightly" / "all" / "report.json").read_text())
    assert report["incremental"]["full_run"] and len(report["incremental"]["processed"]) == 3

    (folder / "day-3.jsonl").write_text("\n".join(lines[3::4]) + "\n", encoding="utf-8")
    second = run("airflow", "dags", "test", "xlcorpus_corpus", "2026-11-22", "-c", conf)
    assert second.returncode == 0, (second.stdout + second.stderr)[-5000:]
    report = json.loads((runs / "nightly" / "all" / "report.json").read_text())
    assert report["incremental"]["processed"] == [str(folder / "day-3.jsonl")]
    assert report["incremental"]["unchanged"] == 3 and not report["incremental"]["full_run"]
    assert report["accounting"]["balanced"] and report["accounting"]["in"] == len(lines)
    dd = datasets.load_from_disk(str(runs / "nightly" / "all"))
    assert len(dd["train"]) == report["accounting"]["kept"]
    assert {s.rsplit("/", 1)[-1] for s in dd["train"]["source"]} == {f"day-{n}.jsonl" for n in range(4)}
