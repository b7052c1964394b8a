"""End-to-end scale benchmark: LID -> lexical filter -> transliteration -> dataset.

    python bench/e2e.py [--lines 100000] [--scale 10] [--files 8] [--modes in_memory,multi_processing]

Runs the full corpus pipeline on generated multilingual JSONL of N and scale*N lines,
each run in a fresh process, on the DirectRunner in_memory and multi_processing
(2 workers). Prints lines/s, peak RSS, and the (scale*N)/N ratios of time (ideal:
scale) and of peak memory (ideal: 1), and writes them as a Markdown table with
--markdown FILE.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_gen import make_corpus  # noqa: E402


def config(glob: str, out: str) -> dict:
    from xlcorpus.pipelines.cli import demo_config_path

    data = demo_config_path().parent
    return {
        "input": {"paths": [glob], "batch_size": 4096},
        "langid": {"threshold": 0.3},
        "lexfilter": {"enabled": True, "lexicon": str(data / "lexicon-zdj.parquet"), "langs": ["swa"],
                      "threshold": 0.45},
        "transliterate": {"enabled": True, "policies": {"*": "romanize-non-latin"}},
        "output": {"path": out, "overwrite": True},
    }


def child(args) -> None:
    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.corpus import run_corpus

    beam_args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] \
        if args.mode == "multi_processing" else []
    start = time.perf_counter()
    report = run_corpus(load_config(data=config(args.glob, args.out)), beam_args)
    seconds = time.perf_counter() - start
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(json.dumps({"seconds": seconds, "lines": report["accounting"]["in"], "kept": report["accounting"]["kept"],
                      "balanced": report["accounting"]["balanced"], "peak_rss_mb": rss,
                      "stages": {s["stage"]: s["kept"] for s in report["stages"]}}))


def run(glob: str, out: str, mode: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", "--glob", glob, "--out", out, "--mode", mode],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"pipeline run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--modes", default="in_memory,multi_processing")
    ap.add_argument("--markdown", help="write the results table here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--glob")
    ap.add_argument("--out")
    ap.add_argument("--mode")
    args = ap.parse_args()
    if args.child:
        return child(args)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = [args.lines, args.lines * args.scale]
        for n in sizes:
            (tmp / str(n)).mkdir()
            make_corpus(tmp / str(n), n, args.files)
        for mode in args.modes.split(","):
            results = {}
            for n in sizes:
                r = run(str(tmp / str(n) / "*.jsonl"), str(tmp / f"out-{mode}-{n}"), mode)
                assert r["balanced"] and r["lines"] == n
                results[n] = r
                print(f"{mode:16s} {n:>9,} lines: {n / r['seconds']:>8,.0f} lines/s  {r['seconds']:7.1f} s  "
                      f"peak RSS {r['peak_rss_mb']:6.0f} MB  kept {r['kept']:,}  stages {r['stages']}", flush=True)
            small, big = results[sizes[0]], results[sizes[1]]
            time_ratio, mem_ratio = big["seconds"] / small["seconds"], big["peak_rss_mb"] / small["peak_rss_mb"]
            print(f"{mode:16s} ratios {sizes[1]:,}/{sizes[0]:,}: time {time_ratio:.1f} (ideal {args.scale}), "
                  f"peak memory {mem_ratio:.2f} (ideal 1)", flush=True)
            rows.append((mode, small, big, time_ratio, mem_ratio))
    if args.markdown:
        lines = ["| runner mode | lines | lines/s | seconds | peak RSS (MB) | time ratio | memory ratio |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for mode, small, big, tr, mr in rows:
            for r, ratio in ((small, ("", "")), (big, (f"{tr:.1f}", f"{mr:.2f}"))):
                lines.append(f"| {mode} | {r['lines']:,} | {r['lines'] / r['seconds']:,.0f} | {r['seconds']:.1f} | "
                             f"{r['peak_rss_mb']:.0f} | {ratio[0]} | {ratio[1]} |")
        Path(args.markdown).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
