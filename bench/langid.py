"""Benchmark: the LID pipeline end to end against raw fastText predict, in one run.

    python bench/langid.py [--lines 200000] [--scale 10] [--top-k 3] [--files 4]

Prints:
- raw fastText ``predict`` lines/s on the same lines (one list call, k=top_k and k=1);
- the LID stage alone (``LanguageId.process`` on the reader's batches, no Beam) over raw;
- pipeline lines/s, read JSONL -> LID -> write dataset, Beam start-up included,
  on the DirectRunner in_memory and multi_processing (2 workers, and 1 worker);
- ratio pipeline / raw (goal >= 0.9 in one process), for in_memory also in CPU seconds
  (the pipeline process's own CPU time against raw predict's), which other work on a
  shared machine moves far less than wall time;
- the same job without the LID stage (read -> write dataset): what the reader, the
  sink and Beam cost on their own, and so the highest ratio a pipeline with this
  reader and sink can reach in one process, raw / (raw + that job), fastText's
  predict holding the GIL;
- multi_processing with 2 workers over 1 worker (a figure: the machine is shared);
- peak RSS of the pipeline process at N and scale*N lines (should stay flat).

Each pipeline run is a fresh subprocess so its peak RSS is its own.

Last line: ``RESULT in_memory=R multi_processing=R two_workers=W in_memory_cpu=C`` (ratios
over raw predict at k=top_k; W = the 2-worker ratio over the 1-worker one; C = the
in_memory ratio in CPU seconds, raw predict's least of its two runs around the pipeline).
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


def raw_predict(paths: list[Path], k: int, cpu: list | None = None) -> float:
    """lines/s of fastText predict on the raw texts (parsing not timed); ``cpu`` (if
    given) gets the CPU seconds the call took."""
    import fasttext

    from xlcorpus.transforms.backends.lid_model import default_model_path

    fasttext.FastText.eprint = lambda *a, **kw: None
    model = fasttext.load_model(str(default_model_path()))
    lines = [json.loads(l)["text"] for p in paths for l in p.read_text(encoding="utf-8").splitlines()]
    model.predict(lines[:1000], k=k)  # warm-up
    start, start_cpu = time.perf_counter(), time.process_time()
    model.predict(lines, k=k)
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return len(lines) / (time.perf_counter() - start)


def child(args) -> None:
    """One pipeline run; prints seconds and peak RSS as JSON."""
    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.corpus import run_corpus

    data = {"input": {"paths": [args.glob], "batch_size": 4096},
            "langid": {"top_k": args.top_k, "threshold": 0.0},
            "output": {"path": args.out, "overwrite": True}}
    if args.no_lid:
        data["stages"] = []
    config = load_config(data=data)
    beam_args = ["--direct_running_mode=multi_processing", f"--direct_num_workers={args.workers}"] \
        if args.mode == "multi_processing" else []
    start, start_cpu = time.perf_counter(), time.process_time()
    report = run_corpus(config, beam_args)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "lines": report["accounting"]["in"], "kept": report["accounting"]["kept"],
                      "peak_rss_mb": rss / 1024}))


def stage_alone(paths: list[Path], k: int) -> float:
    """lines/s of the LID stage's ``process`` on the reader's batches (built, not timed)."""
    from xlcorpus.transforms.stages.langid import LangIdOptions, LanguageId
    from xlcorpus.transforms.stages.read.documents import DOCS, ReaderOptions, read_file

    batches = []
    for p in paths:
        with open(p, "rb") as f:
            batches += [b for tag, b in read_file(f, str(p), ReaderOptions(batch_size=4096)) if tag == DOCS]
    stage = LanguageId(LangIdOptions(top_k=k, threshold=0.0))
    stage.setup()
    stage.process(batches[0].slice(0, 1000))  # warm-up
    start = time.perf_counter()
    for b in batches:
        stage.process(b)
    return sum(b.num_rows for b in batches) / (time.perf_counter() - start)


def run_pipeline(glob: str, out: str, mode: str, top_k: int, workers: int = 2, no_lid: bool = False) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", "--glob", glob, "--out", out, "--mode", mode,
                           "--top-k", str(top_k), "--workers", str(workers)] + (["--no-lid"] if no_lid else []),
                          capture_output=True, text=True, check=False)
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
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-lid", action="store_true")
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
        results, ratios = {}, {}
        for mode, workers in (("in_memory", 1), ("multi_processing", 2), ("multi_processing", 1)):
            label = mode if workers == 2 or mode == "in_memory" else f"{mode} (1 worker)"
            raw_cpu: list[float] = []
            before_k, before_1 = raw_predict(paths, args.top_k, raw_cpu), raw_predict(paths, 1)
            r = run_pipeline(str(tmp / "n" / "*.jsonl"), str(tmp / f"out-{mode}-{workers}"), mode, args.top_k, workers)
            raw_k = (before_k + raw_predict(paths, args.top_k, raw_cpu)) / 2
            raw_1 = (before_1 + raw_predict(paths, 1)) / 2
            results[label] = r
            speed = r["lines"] / r["seconds"]
            ratios[label] = speed / raw_k
            print(f"raw fastText predict, k={args.top_k}: {raw_k:,.0f} lines/s;  k=1: {raw_1:,.0f} lines/s")
            print(f"pipeline {label:28s}: {speed:,.0f} lines/s ({r['seconds']:.2f} s, peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB)  ratio vs raw k={args.top_k}: {speed / raw_k:.2f}  "
                  f"vs raw k=1: {speed / raw_1:.2f}", flush=True)
            if mode == "in_memory":
                # CPU time: other work on the shared machine barely moves it (one process, so
                # the pipeline's CPU time is all of its work)
                cpu_ratio = min(raw_cpu) / r["cpu_seconds"]
                print(f"CPU time in_memory: raw predict k={args.top_k} {min(raw_cpu):.2f} s, pipeline "
                      f"{r['cpu_seconds']:.2f} s, ratio {cpu_ratio:.2f}", flush=True)
                alone = stage_alone(paths, args.top_k)
                print(f"LID stage alone (process() on the reader's batches, no Beam): {alone:,.0f} lines/s, "
                      f"ratio vs raw k={args.top_k}: {alone / raw_k:.2f}", flush=True)
                # the same job without LID: the reader, the sink and Beam on their own
                before = raw_predict(paths, args.top_k)
                rw = run_pipeline(str(tmp / "n" / "*.jsonl"), str(tmp / "out-no-lid"), mode, args.top_k, no_lid=True)
                raw = (before + raw_predict(paths, args.top_k)) / 2
                predict_s = args.lines / raw
                print(f"read -> write, no LID, in_memory: {rw['seconds']:.2f} s ({args.lines / rw['seconds']:,.0f} "
                      f"lines/s) against raw predict's {predict_s:.2f} s: highest ratio with this reader and "
                      f"sink in one process {predict_s / (predict_s + rw['seconds']):.2f}", flush=True)
        # each run against the raw predict timed around it: the machine's speed drifts between runs
        two_workers = ratios["multi_processing"] / ratios["multi_processing (1 worker)"]
        one, two = (results[k]["seconds"] for k in ("multi_processing (1 worker)", "multi_processing"))
        print(f"multi_processing, 2 workers over 1 worker: {two_workers:.2f}x (each over the raw predict timed "
              f"around it; plain lines/s {one / two:.2f}x)")
        if args.scale:
            (tmp / "big").mkdir()
            make_corpus(tmp / "big", args.lines * args.scale, args.files)
            big = run_pipeline(str(tmp / "big" / "*.jsonl"), str(tmp / "out-big"), "in_memory", args.top_k)
            small = results["in_memory"]
            print(f"peak RSS in_memory: {small['peak_rss_mb']:.0f} MB at {small['lines']:,} lines, "
                  f"{big['peak_rss_mb']:.0f} MB at {big['lines']:,} lines "
                  f"(ratio {big['peak_rss_mb'] / small['peak_rss_mb']:.2f}; time ratio "
                  f"{big['seconds'] / small['seconds']:.1f} for {args.scale}x lines)")
    print(f"RESULT in_memory={ratios['in_memory']:.2f} multi_processing={ratios['multi_processing']:.2f} "
          f"two_workers={two_workers:.2f} in_memory_cpu={cpu_ratio:.2f}")


if __name__ == "__main__":
    main()
