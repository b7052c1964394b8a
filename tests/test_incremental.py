"""Incremental runs (output.mode: incremental): only new and changed files are
processed, and the dataset is always the one a full run over the current inputs gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest

from xlcorpus.pipelines.config import load_config
from xlcorpus.pipelines.corpus import run_corpus
from xlcorpus.pipelines.run import prepare_output

from .conftest import data_file_hashes, write_jsonl

FILES = 5


def _inputs(folder: Path, demo_jsonl: Path, files: int = FILES) -> list[Path]:
    """The demo's lines (bad ones included) dealt round-robin into ``files`` files
    (several languages each)."""
    rows = demo_jsonl.read_text(encoding="utf-8").splitlines()
    folder.mkdir(parents=True, exist_ok=True)
    return [write_jsonl(folder / f"part-{n:02d}.jsonl", rows[n::files]) for n in range(files)]


def _valid(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if isinstance(json.loads(line).get("text"), str):
                out.append(line)
        except (ValueError, AttributeError):
            pass
    return out


def _config(inputs: str, out: Path, mode: str = "incremental", stages=("langid",), **sections):
    data = {"stages": list(stages), "input": {"paths": [inputs], "batch_size": 16},
            "output": {"path": str(out), "mode": mode, "overwrite": mode == "overwrite"}, **sections}
    return load_config(data=data)


def _full_run(inputs: str, out: Path, **kw) -> dict:
    return run_corpus(_config(inputs, out, mode="overwrite", **kw))


def _all_files(out: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in sorted(out.rglob("*"))
            if p.is_file()}


def _without_volatile(report: dict) -> dict:
    drop = {"started", "seconds", "rows_per_second", "incremental", "config", "beam_args", "dedup", "langid"}
    return {k: v for k, v in report.items() if k not in drop}


@pytest.fixture
def corpus(tmp_path, demo_jsonl):
    folder = tmp_path / "in"
    files = _inputs(folder, demo_jsonl)
    return folder, files, str(folder / "*.jsonl")


def test_a_new_file_is_the_only_one_processed_and_the_result_equals_a_full_run(tmp_path, corpus, demo_jsonl):
    folder, files, glob = corpus
    last = files.pop()
    held = tmp_path / "held"
    held.mkdir()
    last.rename(held / last.name)
    first = run_corpus(_config(glob, tmp_path / "out"))
    assert first["incremental"]["full_run"] and first["incremental"]["full_reason"] == "no output yet"
    assert len(first["incremental"]["processed"]) == FILES - 1

    (held / last.name).rename(last)
    second = run_corpus(_config(glob, tmp_path / "out"))
    inc = second["incremental"]
    assert inc["processed"] == [str(last)] and inc["new"] == [str(last)] and inc["unchanged"] == FILES - 1
    assert not inc["full_run"] and inc["rows_processed"] == sum(1 for _ in last.open())

    full = _full_run(glob, tmp_path / "full")
    assert second["accounting"] == full["accounting"] and second["accounting"]["balanced"]
    assert _without_volatile(second) == _without_volatile(full)
    # the same bytes as a full run: dataset, rejected and dead-letter shards
    assert data_file_hashes(tmp_path / "out") == data_file_hashes(tmp_path / "full")
    dd = datasets.load_from_disk(str(tmp_path / "out"))
    assert sum(len(s) for s in dd.values()) == full["accounting"]["kept"]
    sources = {s for split in dd.values() for s in split["source"]}
    assert str(last) in sources and len(sources) == FILES


def test_a_rerun_with_no_new_file_does_nothing_and_says_so(tmp_path, corpus, caplog):
    _folder, files, glob = corpus
    out = tmp_path / "out"
    first = run_corpus(_config(glob, out))
    before = _all_files(out)
    os.utime(files[0])  # touched, not changed: hashed, not processed
    caplog.set_level("INFO")
    again = run_corpus(_config(glob, out))
    assert again["incremental"]["nothing_to_do"] and again["incremental"]["processed"] == []
    assert again["incremental"]["unchanged"] == FILES
    assert "is up to date" in caplog.text
    assert _all_files(out) == before  # not a file rewritten
    assert again["accounting"] == first["accounting"]


def test_a_changed_file_replaces_its_rows_and_a_removed_file_takes_its_rows_away(tmp_path, corpus):
    _folder, files, glob = corpus
    out = tmp_path / "out"
    run_corpus(_config(glob, out))
    changed = files[1]
    rows = [json.loads(line) for line in _valid(changed)]
    new_rows = rows[5:] + [{"id": "added-1", "text": "Kull filgħodu nixrob kafè sħun qabel ma noħroġ mid-dar."}]
    write_jsonl(changed, new_rows)
    files[3].unlink()
    report = run_corpus(_config(glob, out))
    inc = report["incremental"]
    assert inc["changed"] == [str(changed)] and inc["removed"] == [str(files[3])] and inc["new"] == []
    assert inc["processed"] == [str(changed)]

    dd = datasets.load_from_disk(str(out))
    ids = {i for split in dd.values() for i, s in zip(split["id"], split["source"]) if s == str(changed)}
    rejected = datasets.load_from_disk(str(out / "_rejected"))
    ids |= {i for i, s in zip(rejected["id"], rejected["source"]) if s == str(changed)}
    dead = datasets.load_from_disk(str(out / "_dead_letter"))
    ids |= {i for i, s in zip(dead["id"], dead["source"]) if s == str(changed)}
    assert ids == {r["id"] for r in new_rows}  # the old version's rows are gone, all new ones are there
    assert not any(s == str(files[3]) for split in dd.values() for s in split["source"])
    full = _full_run(glob, tmp_path / "full")
    assert data_file_hashes(out) == data_file_hashes(tmp_path / "full")
    assert report["accounting"] == full["accounting"]


def test_a_different_config_makes_a_full_run(tmp_path, corpus):
    _folder, _files, glob = corpus
    out = tmp_path / "out"
    run_corpus(_config(glob, out))
    report = run_corpus(_config(glob, out, langid={"threshold": 0.9}))
    assert report["incremental"]["full_run"] and "configuration" in report["incremental"]["full_reason"]
    assert len(report["incremental"]["processed"]) == FILES
    assert report["accounting"]["in"] == _full_run(glob, tmp_path / "full")["accounting"]["in"]


def test_exact_dedup_compares_new_rows_with_the_rows_already_kept(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "a.jsonl", [{"id": "a1", "text": "One sentence that comes back later."},
                                     {"id": "a2", "text": "Another sentence, only once."}])
    glob = str(folder / "*.jsonl")
    out = tmp_path / "out"
    kw = {"stages": ("dedup",), "dedup": {"shards": 2}}
    run_corpus(_config(glob, out, **kw))
    write_jsonl(folder / "b.jsonl", [{"id": "b1", "text": "one sentence that comes back LATER"},
                                     {"id": "b2", "text": "A new sentence."}])
    report = run_corpus(_config(glob, out, **kw))
    assert report["incremental"]["processed"] == [str(folder / "b.jsonl")]
    kept = datasets.concatenate_datasets(list(datasets.load_from_disk(str(out)).values()))
    assert sorted(kept["id"]) == ["a1", "a2", "b2"]
    rejected = datasets.load_from_disk(str(out / "_rejected"))
    assert rejected["id"] == ["b1"] and rejected["reason"] == ["duplicate"]
    detail = json.loads(rejected["detail"][0])
    assert detail["kept"] == "a1" and detail["kept_source"] == str(folder / "a.jsonl")
    # and a third run still knows every kept text
    write_jsonl(folder / "c.jsonl", [{"id": "c1", "text": "a new sentence."}])
    third = run_corpus(_config(glob, out, **kw))
    rejected = datasets.load_from_disk(str(out / "_rejected"))
    assert sorted(rejected["id"]) == ["b1", "c1"] and third["accounting"]["kept"] == 3


def test_a_killed_incremental_run_leaves_the_previous_dataset_intact(tmp_path, corpus, demo_jsonl):
    folder, _files, glob = corpus
    out = tmp_path / "out"
    config = tmp_path / "job.yaml"
    config.write_text(json.dumps({"stages": ["langid"], "input": {"paths": [glob], "batch_size": 16},
                                  "output": {"path": str(out), "mode": "incremental"}}))
    run = [sys.executable, "-m", "xlcorpus.pipelines.cli", "run", str(config), "--no-progress"]
    assert subprocess.run(run, capture_output=True).returncode == 0
    before = data_file_hashes(out)
    # a big new file, so that the run is still going when it is killed
    rows = [json.loads(line) for line in _valid(demo_jsonl)]
    write_jsonl(folder / "zz-big.jsonl", [{**r, "id": f"{r['id']}-{n}"} for n in range(300) for r in rows])
    proc = subprocess.Popen(run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob("out.tmp-*/_shards")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert data_file_hashes(out) == before
    dd = datasets.load_from_disk(str(out))
    assert "zz-big" not in "".join(s for split in dd.values() for s in set(split["source"]))
    assert list(tmp_path.glob("out.tmp-*"))  # the dead run's leftovers, removed by the next run
    done = subprocess.run(run, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(tmp_path.glob("out.tmp-*"))
    report = json.loads((out / "report.json").read_text())
    assert report["incremental"]["processed"] == [str(folder / "zz-big.jsonl")]
    assert report["accounting"]["balanced"] and report["accounting"]["in"] == len(rows) * 300 + sum(
        1 for p in folder.glob("part-*.jsonl") for _ in p.open())


def test_a_publish_killed_between_its_renames_is_repaired_by_the_next_run(tmp_path, corpus):
    _folder, _files, glob = corpus
    out = tmp_path / "out"
    run_corpus(_config(glob, out))
    before = data_file_hashes(out)
    out.rename(tmp_path / "out.old-deadbeef")  # what publish leaves if killed right after its first rename
    prepare_output(str(out), overwrite=True)
    assert data_file_hashes(out) == before and not list(tmp_path.glob("out.old-*"))
    assert run_corpus(_config(glob, out))["incremental"]["nothing_to_do"]


def test_only_removed_files_run_no_pipeline_and_take_their_rows_away(tmp_path, corpus):
    _folder, files, glob = corpus
    out = tmp_path / "out"
    run_corpus(_config(glob, out))
    files[0].unlink()
    report = run_corpus(_config(glob, out))
    inc = report["incremental"]
    assert inc["removed"] == [str(files[0])] and inc["processed"] == [] and not inc["nothing_to_do"]
    assert inc["rows_processed"] == 0
    full = _full_run(glob, tmp_path / "full")
    assert data_file_hashes(out) == data_file_hashes(tmp_path / "full")
    assert report["accounting"] == full["accounting"] and report["accounting"]["balanced"]


def test_incremental_runs_on_an_object_store(tmp_path, corpus):
    """Old shards are copied (no hard links there) and laid out with the new ones."""
    from .objectstore import ObjectStore

    folder, files, glob = corpus
    ObjectStore.root = tmp_path / "bucket"
    (tmp_path / "bucket").mkdir()
    held = files.pop()
    held.rename(tmp_path / held.name)
    run_corpus(_config(glob, "teststore://runs/inc"))
    (tmp_path / held.name).rename(held)
    report = run_corpus(_config(glob, "teststore://runs/inc"))
    assert report["incremental"]["processed"] == [str(held)]
    local = tmp_path / "bucket" / "runs" / "inc"
    _full_run(glob, tmp_path / "full")
    assert data_file_hashes(local) == data_file_hashes(tmp_path / "full")
    assert not list((tmp_path / "bucket" / "runs").glob("inc.tmp-*"))
    assert run_corpus(_config(glob, "teststore://runs/inc"))["incremental"]["nothing_to_do"]
