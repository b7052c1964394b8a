"""Benchmark: the LID pipeline end to end against raw fastText predict, in one run.

    python bench/langid.py [--lines 200000] [--scale 10] [--top-k 3] [--files 4]

Prints:
- raw fastText ``predict`` lines/s on the same lines (one list call, k=top_k and k=1);
- pipeline lines/s, read JSONL -> LID -> write dataset, Beam start-up included,
  on the DirectRunner in_memory and multi_processing (2 workers);
- ratio pipeline / raw (target >= 0.6);
- peak RSS of the pipeline process at N and scale*N lines (should stay flat).

Each pipeline run is a fresh subprocess so its peak RSS is its own.
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


def raw_predict(paths: list[Path], k: int) -> float:
    """lines/s of fastText predict on the raw texts (parsing not timed)."""
    import fasttext

    from xlcorpus.transforms.backends.lid_model import default_model_path

    fasttext.FastText.eprint = lambda *a, **kw: None
    model = fasttext.load_model(str(default_model_path()))
    lines = [json.loads(l)["text"] for p in paths for l in p.read_text(encoding="utf-8").splitlines()]
    model.predict(lines[:1000], k=k)  # warm-up
    start = time.perf_counter()
    model.predict(lines, k=k)
    return len(lines) / (time.perf_counter() - start)


def child(args) -> None:
    """One pipeline run; prints seconds and peak RSS as JSON."""
    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.corpus import run_corpus

    config = load_config(data={"input": {"paths": [args.glob], "batch_size": 4096},
                               "langid": {"top_k": args.top_k, "threshold": 0.0},
                               "output": {"path": args.out, "overwrite": True}})
    beam_args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] \
        if args.mode == "multi_processing" else []
    start = time.perf_counter()
    report = run_corpus(config, beam_args)
    seconds = time.perf_counter() - start
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"seconds": seconds, "lines": report["accounting"]["in"], "kept": report["accounting"]["kept"],
                      "peak_rss_mb": rss / 1024}))


def run_pipeline(glob: str, out: str, mode: str, top_k: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", "--glob", glob, "--out", out, "--mode", mode,
                           "--top-k", str(top_k)], capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"pipeline run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--scale", type=int, default=10, help="RSS check at lines * scale (0: skip)")
    ap.add_argument("--top-k", type=int, default=3)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--glob")
    ap.add_argument("--out")
    ap.add_argument("--mode", default="in_memory")
    args = ap.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "n").mkdir()
        paths = make_corpus(tmp / "n", args.lines, args.files)
        print(f"lines: {args.lines} in {args.files} JSONL files; top_k={args.top_k}")
        # The machine is shared and its speed drifts: raw predict is timed right before
        # and after each pipeline run, and the ratio uses their mean.
        results = {}
        for mode in ("in_memory", "multi_processing"):
            before_k, before_1 = raw_predict(paths, args.top_k), raw_predict(paths, 1)
            r = run_pipeline(str(tmp / "n" / "*.jsonl"), str(tmp / f"out-{mode}"), mode, args.top_k)
            raw_k = (before_k + raw_predict(paths, args.top_k)) / 2
            raw_1 = (before_1 + raw_predict(paths, 1)) / 2
            results[mode] = r
            speed = r["lines"] / r["seconds"]
            print(f"raw fastText predict, k={args.top_k}: {raw_k:,.0f} lines/s;  k=1: {raw_1:,.0f} lines/s")
            print(f"pipeline {mode:16s}: {speed:,.0f} lines/s ({r['seconds']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB)"
                  f"  ratio vs raw k={args.top_k}: {speed / raw_k:.2f}  vs raw k=1: {speed / raw_1:.2f}")
        if args.scale:
            (tmp / "big").mkdir()
            make_corpus(tmp / "big", args.lines * args.scale, args.files)
            big = run_pipeline(str(tmp / "big" / "*.jsonl"), str(tmp / "out-big"), "in_memory", args.top_k)
            small = results["in_memory"]
            print(f"peak RSS in_memory: {small['peak_rss_mb']:.0f} MB at {small['lines']:,} lines, "
                  f"{big['peak_rss_mb']:.0f} MB at {big['lines']:,} lines "
                  f"(ratio {big['peak_rss_mb'] / small['peak_rss_mb']:.2f}; time ratio "
                  f"{big['seconds'] / small['seconds']:.1f} for {args.scale}x lines)")


if __name__ == "__main__":
    main()
