"""Incremental runs: a full run over many files, then a rerun with one new file, then a
rerun with nothing new, in one process on the same input (DirectRunner).

    python bench/incremental.py [--files 100] [--rows-per-file 500] [--work DIR]

The job is LID + transliteration (the demo's sections), ``output.mode: incremental``.
Prints each run's wall time and rows processed, checks that the updated dataset has
the bytes of a full overwrite run over all files, and ends with
``RESULT full_s=F one_new_s=N nothing_new_s=Z speedup=F/N identical=true|false``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from bench.soak import write_inputs  # noqa: E402


def data_hashes(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*.arrow")) if "_xlcorpus" not in p.parts}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=100)
    ap.add_argument("--rows-per-file", type=int, default=500)
    ap.add_argument("--work")
    args = ap.parse_args(argv)
    import yaml

    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.corpus import run_corpus

    work = Path(args.work or tempfile.mkdtemp(prefix="xlcorpus-incremental-"))
    shutil.rmtree(work, ignore_errors=True)
    everything = work / "all"
    write_inputs(everything, args.files * args.rows_per_file, args.files)
    folder = work / "in"
    folder.mkdir(parents=True)
    files = sorted(everything.glob("*.jsonl"))
    for f in files[:-1]:
        f.rename(folder / f.name)
    demo = yaml.safe_load((ROOT / "pipelines" / "data" / "demo.yaml").read_text())

    def config(out: Path, mode: str):
        return load_config(data={
            "stages": ["langid", "transliterate"], "input": {"paths": [str(folder / "*.jsonl")]},
            "langid": {k: v for k, v in demo["langid"].items() if k != "enabled"},
            "transliterate": {k: v for k, v in demo["transliterate"].items() if k != "enabled"},
            "output": {"path": str(out), "mode": mode, "overwrite": True}})

    def timed(out: Path, mode: str = "incremental"):
        t = time.perf_counter()
        report = run_corpus(config(out, mode))
        return time.perf_counter() - t, report

    out = work / "out"
    full_s, first = timed(out)
    print(f"full run, {args.files - 1} files: {full_s:.1f} s, {first['accounting']['in']} rows")
    files[-1].rename(folder / files[-1].name)
    one_s, second = timed(out)
    inc = second["incremental"]
    print(f"rerun with 1 new file of {args.files}: {one_s:.1f} s, {inc['rows_processed']} rows processed, "
          f"{inc['unchanged']} files unchanged")
    none_s, third = timed(out)
    print(f"rerun with nothing new: {none_s:.2f} s (nothing_to_do={third['incremental']['nothing_to_do']})")
    _, _full = timed(work / "reference", "overwrite")
    identical = data_hashes(out) == data_hashes(work / "reference")
    print(f"updated dataset == a full overwrite run over all {args.files} files: {identical}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    print(f"RESULT full_s={full_s:.2f} one_new_s={one_s:.2f} nothing_new_s={none_s:.2f} "
          f"speedup={full_s / one_s:.2f} identical={str(identical).lower()}")
    return 0 if identical and inc["processed"] == [str(folder / files[-1].name)] else 1


if __name__ == "__main__":
    sys.exit(main())
