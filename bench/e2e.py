"""End-to-end benchmark: the whole corpus job (read -> LID -> lexical filter ->
transliteration -> dataset) against the LID-only job on the same input, in one run.

    python bench/e2e.py [--lines 100000] [--scale 10] [--files 8] [--modes in_memory,multi_processing]

On generated multilingual JSONL of N and scale*N lines, each run a fresh process on
the DirectRunner (in_memory; multi_processing with 2 workers): lines/s of the full
job and of the LID-only job (read -> LID -> dataset) at scale*N lines (start-up
amortised; the LID-only job runs before and after the full job and counts with its
mean), their ratio (goal >= 0.5 in one process), and the full job's peak RSS at N
and scale*N lines (goal: flat, +-20%).
With --profile, the in_memory full job at N runs under cProfile and the time per
stage (and in the reader and the sink) is printed. --markdown FILE writes the table.
Transliteration loads uroman's tables from the machine's cache (see
transforms/stages/transliterate/uroman_tables.py); if it is empty, the first run (the
full job at N) parses them (~4 s) and fills it.

Each run's CPU time (its threads and worker processes) is printed too, and the ratio by
CPU time, which other load on a shared machine disturbs less than the wall clock.

Last line: ``RESULT e2e_over_lid=R rss_ratio=M e2e_over_lid_cpu=C`` (in_memory; R and
C by wall clock and by CPU time).
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

JOBS = ("full", "lid")


def config(glob: str, out: str, job: str = "full") -> dict:
    """The full job's config (``job="lid"``: the same without lexfilter and transliteration)."""
    from xlcorpus.pipelines.cli import demo_config_path

    data = demo_config_path().parent
    full = {
        "input": {"paths": [glob], "batch_size": 4096},
        "langid": {"threshold": 0.3},
        "lexfilter": {"enabled": True, "lexicon": str(data / "lexicon-zdj.parquet"), "langs": ["swa"],
                      "threshold": 0.45},
        "transliterate": {"enabled": True, "policies": {"*": "romanize-non-latin"}},
        "output": {"path": out, "overwrite": True},
    }
    if job == "lid":
        return {k: v for k, v in full.items() if k not in ("lexfilter", "transliterate")}
    return full


# Where the profile's time goes: the functions whose cumulative time is each stage's
# (core.beam.StageFn.process calls Stage.process; the reader and the sink are DoFns).
PROFILE_PARTS = {
    "read": ("transforms/stages/read/documents.py", ("process",)),
    "langid": ("transforms/stages/langid.py", ("process",)),
    "lexfilter": ("transforms/stages/lexfilter/", ("process",)),
    "transliterate": ("transforms/stages/transliterate/stage.py", ("process",)),
    "sink": ("transforms/stages/write.py", ("process", "finish_bundle")),
}


def profile_parts(stats) -> dict[str, float]:
    """Cumulative seconds per part of the job, from a pstats.Stats."""
    out = dict.fromkeys(PROFILE_PARTS, 0.0)
    for (path, _line, func), (_cc, _nc, _tt, ct, callers) in stats.stats.items():
        for part, (where, names) in PROFILE_PARTS.items():
            # top-level calls only: a stage's process called from a function of its own file is nested
            if func in names and where in path and not any(where in c[0] for c in callers):
                out[part] += ct
    return out


def cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of its finished worker processes:
    the job's work, which other load on a shared machine does not stretch as it does the
    wall clock."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def child(args) -> None:
    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.corpus import run_corpus

    beam_args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] \
        if args.mode == "multi_processing" else []
    cfg = load_config(data=config(args.glob, args.out, args.job))
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    report = run_corpus(cfg, beam_args)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    parts = {}
    if profiler is not None:
        import pstats

        profiler.disable()
        parts = profile_parts(pstats.Stats(profiler))
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "lines": report["accounting"]["in"],
                      "kept": report["accounting"]["kept"], "balanced": report["accounting"]["balanced"],
                      "peak_rss_mb": rss,
                      "stages": {s["stage"]: s["kept"] for s in report["stages"]}, "profile": parts}))


def run(glob: str, out: str, mode: str, job: str, profile: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", "--glob", glob, "--out", out, "--mode", mode, "--job", job]
    proc = subprocess.run(cmd + (["--profile"] if profile else []), capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"pipeline run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--modes", default="in_memory,multi_processing")
    ap.add_argument("--profile", action="store_true", help="profile the in_memory full job at N lines")
    ap.add_argument("--markdown", help="write the results table here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--glob")
    ap.add_argument("--out")
    ap.add_argument("--mode")
    ap.add_argument("--job", default="full")
    args = ap.parse_args()
    if args.child:
        return child(args)

    rows, ratios = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        small, big = args.lines, args.lines * args.scale
        for n in (small, big):
            (tmp / str(n)).mkdir()
            make_corpus(tmp / str(n), n, args.files)
        for mode in args.modes.split(","):
            results = {}
            # the LID-only job right before and after the full job at scale*N lines (start-up
            # amortised): the machine is shared, so the ratio uses their mean speed
            for key, job, n in (("full", "full", small), ("lid-big", "lid", big), ("full-big", "full", big),
                                ("lid-big2", "lid", big)):
                r = run(str(tmp / str(n) / "*.jsonl"), str(tmp / f"out-{mode}-{key}"), mode, job)
                assert r["balanced"] and r["lines"] == n
                results[key] = r
                print(f"{mode:16s} {job:4s} {n:>9,} lines: {n / r['seconds']:>8,.0f} lines/s  {r['seconds']:7.1f} s  "
                      f"(CPU {r['cpu_seconds']:6.1f} s)  "
                      f"peak RSS {r['peak_rss_mb']:6.0f} MB  kept {r['kept']:,}", flush=True)
            lid_speed = (big / results["lid-big"]["seconds"] + big / results["lid-big2"]["seconds"]) / 2
            e2e_over_lid = big / results["full-big"]["seconds"] / lid_speed
            lid_cpu_speed = (big / results["lid-big"]["cpu_seconds"] + big / results["lid-big2"]["cpu_seconds"]) / 2
            cpu_ratio = big / results["full-big"]["cpu_seconds"] / lid_cpu_speed
            rss_ratio = results["full-big"]["peak_rss_mb"] / results["full"]["peak_rss_mb"]
            lid_rss = results["lid-big"]["peak_rss_mb"]
            time_ratio = results["full-big"]["seconds"] / results["full"]["seconds"]
            print(f"{mode:16s} full / LID-only at {big:,} lines: {e2e_over_lid:.2f} (goal >= 0.5; by CPU time "
                  f"{cpu_ratio:.2f});  full job "
                  f"{big:,}/{small:,} lines: time {time_ratio:.1f} (ideal {args.scale}), peak RSS {rss_ratio:.2f} "
                  f"(goal 0.8-1.2; LID-only job at {big:,} lines: {lid_rss:.0f} MB)", flush=True)
            ratios[mode] = (e2e_over_lid, rss_ratio, cpu_ratio)
            rows.append((mode, results, e2e_over_lid, rss_ratio, time_ratio))
        if args.profile:
            r = run(str(tmp / str(small) / "*.jsonl"), str(tmp / "out-profile"), "in_memory", "full", profile=True)
            total = r["seconds"]
            print(f"profile of the in_memory full job at {small:,} lines (cProfile, {total:.1f} s):")
            for part, seconds in r["profile"].items():
                print(f"  {part:22s} {seconds:7.2f} s  {seconds / total:6.1%}", flush=True)
            rest = total - sum(r["profile"].values())
            print(f"  {'Beam, start-up, report':22s} {rest:7.2f} s  {rest / total:6.1%}")
    if args.markdown:
        lines = ["| runner mode | job | lines | lines/s | seconds | peak RSS (MB) |", "|---|---|---:|---:|---:|---:|"]
        for mode, results, *_ in rows:
            for key, r in results.items():
                lines.append(f"| {mode} | {key} | {r['lines']:,} | {r['lines'] / r['seconds']:,.0f} | "
                             f"{r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    mode = "in_memory" if "in_memory" in ratios else next(iter(ratios))
    print(f"RESULT e2e_over_lid={ratios[mode][0]:.2f} rss_ratio={ratios[mode][1]:.2f} "
          f"e2e_over_lid_cpu={ratios[mode][2]:.2f}")


if __name__ == "__main__":
    main()
