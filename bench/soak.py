"""Soak with a fault: the corpus job (LID + transliteration + sink) through Beam's
portable runner with an external pool of SDK workers, one of them SIGKILLed midway.

    python bench/soak.py [--rows 5000000] [--files 200] [--workers 2] [--kill-at 0.4] [--work DIR]

1. Writes ``--rows`` rows with unique ids into ``--files`` JSONL files (sentences of
   the bundled demo in a dozen languages and scripts).
2. Starts Beam's Python job service (``soak_job_service.py``: the stock one, taking
   its worker count from the job's ``--direct_num_workers``) and an external worker
   pool, and runs the job (``xlcorpus run``) with WORKERS SDK workers from the pool.
3. When ``--kill-at`` of the rows have reached the last stage (the workers' own
   progress files),
   SIGKILLs one SDK worker process by its pid.
4. If the runner retried the lost bundles, checks the published output; if the job
   failed instead, checks that it published nothing and runs it again, as a scheduler
   retry would (Airflow's ``retries``), then checks that output.
5. Checks by id that every input row is in exactly one of the dataset, ``_rejected/``
   and ``_dead_letter/``: none lost, none duplicated.

Prints rows/s of each attempt, peak RSS (VmHWM) of the driver and of each SDK worker,
what the kill cost, and last ``RESULT rows=N lost=L duplicated=D recovered=true|false ... hung=true|false``
(recovered: the runner itself finished the killed run with complete output).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["langid", "transliterate"]
LAST_STAGE = STAGES[-1]
DEMO = ROOT / "pipelines" / "data" / "demo.jsonl"


# --- input -------------------------------------------------------------------------------
def write_inputs(folder: Path, rows: int, files: int, seed: int = 3) -> set[str]:
    """``rows`` JSONL rows over ``files`` files, ids ``<file>-<n>``; returns the ids."""
    texts = []
    for line in DEMO.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # the demo's deliberately broken lines
            continue
        if isinstance(record, dict) and isinstance(record.get("text"), str) and record["text"].strip():
            texts.append(record["text"])
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per_file = [rows // files + (1 if f < rows % files else 0) for f in range(files)]
    dumps = json.dumps
    ids: set[str] = set()
    for f, count in enumerate(per_file):
        names = [f"{f:05d}-{n:08d}" for n in range(count)]
        with open(folder / f"part-{f:05d}.jsonl", "w", encoding="utf-8") as out:
            out.write("".join(dumps({"id": i, "text": t}, ensure_ascii=False) + "\n"
                              for i, t in zip(names, rng.choices(texts, k=count))))
        ids.update(names)
    return ids


# --- services and processes ----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}")
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s")


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc: no psutil needed)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the process's peak resident set so far."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Services:
    """Beam's job service and an external SDK worker pool, each its own process."""

    def __init__(self, work: Path, progress_dir: Path):
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               "XLCORPUS_PROGRESS_DIR": str(progress_dir)}  # the workers report rows read
        self.job_port, self.pool_port = free_port(), free_port()
        self.job = subprocess.Popen([sys.executable, str(Path(__file__).with_name("soak_job_service.py")),
                                     f"--port={self.job_port}"], env=env, stdout=subprocess.DEVNULL,
                                    stderr=open(work / "job_service.log", "w"))
        self.pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                                      f"--service_port={self.pool_port}"], env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(work / "worker_pool.log", "w"))
        wait_for(self.job_port, self.job)
        wait_for(self.pool_port, self.pool)

    def workers(self) -> list[int]:
        return children(self.pool.pid)

    def close(self):
        for p in (self.job, self.pool):
            p.terminate()
        for p in (self.job, self.pool):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


# --- one run ---------------------------------------------------------------------------------
def run_job(config: Path, services: Services, workers: int, progress_dir: Path, rows: int,
            kill_at: float | None, log: Path, stall_timeout: float = 180) -> dict:
    """Runs the job once; SIGKILLs one SDK worker when ``kill_at`` of the rows are read.

    After the kill, a job that makes no progress for ``stall_timeout`` seconds is hung
    (Beam's Python job service can wait forever for the dead worker's bundle: its control
    stream's reader thread dies and nothing fails the job); it is stopped, as a
    scheduler's execution timeout would, and counts as a failed attempt."""
    shutil.rmtree(progress_dir, ignore_errors=True)
    progress_dir.mkdir(parents=True)
    from xlcorpus.transforms.core.progress import read_totals

    cmd = [sys.executable, "-m", "xlcorpus.pipelines.cli", "run", str(config), "--no-progress",
           "--runner=PortableRunner", f"--job_endpoint=localhost:{services.job_port}",
           "--environment_type=EXTERNAL", f"--environment_config=localhost:{services.pool_port}",
           f"--direct_num_workers={workers}"]
    started = time.time()
    driver = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    peaks: dict[int, float] = {}
    killed, killed_at_rows, driver_peak = None, None, 0.0
    hung, last_rows, last_change = False, -1, time.time()
    while driver.poll() is None:
        for pid in services.workers():
            if (rss := peak_rss_mb(pid)) is not None:
                peaks[pid] = max(peaks.get(pid, 0.0), rss)
        driver_peak = max(driver_peak, peak_rss_mb(driver.pid) or 0.0)
        # rows that reached the last stage (reading runs ahead of the stages)
        read = read_totals(str(progress_dir)).get(LAST_STAGE, {}).get("in", 0)
        if kill_at is not None and killed is None and read >= kill_at * rows:
            live = sorted(services.workers())
            if live:
                killed, killed_at_rows = live[0], read
                os.kill(killed, signal.SIGKILL)
                print(f"  killed SDK worker pid {killed} after {read} rows reached {LAST_STAGE} ({time.time() - started:.1f} s)",
                      flush=True)
        if read != last_rows:
            last_rows, last_change = read, time.time()
        elif killed is not None and time.time() - last_change > stall_timeout:
            hung = True
            print(f"  no progress for {stall_timeout:.0f} s after the kill: the job hangs; stopping it", flush=True)
            driver.terminate()
            try:
                driver.wait(timeout=30)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait()
            break
        time.sleep(0.2)
    seconds = time.time() - started
    return {"rc": driver.returncode, "hung": hung, "seconds": seconds, "rows_per_s": rows / seconds, "killed": killed,
            "killed_at_rows": killed_at_rows, "driver_peak_mb": driver_peak,
            "worker_peaks_mb": sorted(peaks.values(), reverse=True), "workers_seen": len(peaks)}


# --- the check -------------------------------------------------------------------------------
def output_ids(out: Path) -> list[str]:
    """Every id the published output holds: dataset splits, _rejected, _dead_letter."""
    import pyarrow as pa

    ids: list[str] = []
    for path in sorted(out.rglob("*.arrow")):
        if "_xlcorpus" in path.parts:
            continue
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_stream(source).read_all()
        column = table.column("id").to_pylist()
        if "_dead_letter" in path.parts:  # a bad line has no id of its own: its source and line
            column = [i if i is not None else f"{s}:{n}" for i, s, n in
                      zip(column, table.column("source").to_pylist(), table.column("line").to_pylist())]
        ids.extend(column)
    return ids


def check(out: Path, expected: set[str]) -> tuple[int, int]:
    ids = output_ids(out)
    counts = Counter(ids)
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    lost = len(expected - counts.keys())
    return lost, duplicated


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kill-at", type=float, default=0.4,
                    help="fraction of the rows through the last stage when a worker is killed")
    ap.add_argument("--stall-timeout", type=float, default=180,
                    help="seconds without progress after the kill before the job counts as hung and is stopped")
    ap.add_argument("--work", help="working folder (default: a new temporary one, removed at the end)")
    args = ap.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="xlcorpus-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs, out, progress_dir = work / "in", work / "out", work / "progress"
    t = time.time()
    shutil.rmtree(inputs, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)  # a reused --work: "nothing published" must mean this run's output
    expected = write_inputs(inputs, args.rows, args.files)
    rows = len(expected)
    print(f"{rows} rows in {args.files} files written in {time.time() - t:.1f} s", flush=True)
    demo = (ROOT / "pipelines" / "data" / "demo.yaml").read_text()
    import yaml

    demo_config = yaml.safe_load(demo)
    config = work / "job.yaml"
    config.write_text(json.dumps({
        "name": "soak", "stages": STAGES,
        "input": {"paths": [str(inputs / "*.jsonl")]},
        "langid": {k: v for k, v in demo_config["langid"].items() if k != "enabled"},
        "transliterate": {k: v for k, v in demo_config["transliterate"].items() if k != "enabled"},
        "output": {"path": str(out), "overwrite": True}}))

    services = Services(work, progress_dir)
    try:
        print(f"job service :{services.job_port}, worker pool :{services.pool_port}; {args.workers} SDK workers",
              flush=True)
        first = run_job(config, services, args.workers, progress_dir, rows, args.kill_at, work / "attempt-1.log",
                        args.stall_timeout)
        attempts = [first]
        if first["killed"] is None:
            print("the job ended before a worker could be killed: use more --rows (or a smaller --kill-at)")
            print(f"RESULT rows={rows} lost=-1 duplicated=-1 recovered=false clean_failure=false killed=false")
            return 1
        recovered = first["rc"] == 0 and not first["hung"]
        print(f"attempt 1 (worker killed: {first['killed'] is not None}): rc={first['rc']} hung={first['hung']} "
              f"{first['seconds']:.1f} s, {first['workers_seen']} SDK worker processes seen", flush=True)
        if not recovered:
            tail = (work / "attempt-1.log").read_text(errors="replace")[-1500:]
            print("  the runner did not recover; the job failed with:\n    "
                  + "\n    ".join(tail.strip().splitlines()[-6:]), flush=True)
            published = out.exists()
            print(f"  published output after the failed attempt: {published} (must be False)", flush=True)
            if published:
                print("RESULT rows=%d lost=-1 duplicated=-1 recovered=false clean_failure=false" % rows)
                return 1
            if first["hung"]:  # a wedged job service: the retry gets fresh services, as a new scheduler task would
                services.close()
                services = Services(work, progress_dir)
            second = run_job(config, services, args.workers, progress_dir, rows, None, work / "attempt-2.log")
            attempts.append(second)
            print(f"attempt 2 (a scheduler's retry, no kill): rc={second['rc']} {second['seconds']:.1f} s "
                  f"({second['rows_per_s']:.0f} rows/s), {second['workers_seen']} SDK worker processes seen", flush=True)
            if second["rc"] != 0:
                print((work / "attempt-2.log").read_text(errors="replace")[-3000:])
                print("RESULT rows=%d lost=-1 duplicated=-1 recovered=false clean_failure=true" % rows)
                return 1
        lost, duplicated = check(out, expected)
        report = json.loads((out / "report.json").read_text())
        acct = report["accounting"]
        done = attempts[-1]
        print(f"accounting: in {acct['in']} = kept {acct['kept']} + rejected {acct['rejected']} + dead-letter "
              f"{acct['dead_letter']} (balanced: {acct['balanced']})")
        print(f"rows/s of the finishing attempt: {done['rows_per_s']:.0f}; peak RSS: driver "
              f"{done['driver_peak_mb']:.0f} MB, SDK workers "
              + ", ".join(f"{m:.0f}" for m in done["worker_peaks_mb"]) + " MB")
        cost = sum(a["seconds"] for a in attempts) - done["seconds"]
        print(f"the kill cost {cost:.1f} s of work redone" + ("" if recovered else
              " (the failed attempt's time; the retry reran every row)"))
        print(f"RESULT rows={rows} lost={lost} duplicated={duplicated} recovered={str(recovered).lower()} "
              f"clean_failure={str(not recovered).lower()} rows_per_s={done['rows_per_s']:.0f} "
              f"driver_rss_mb={done['driver_peak_mb']:.0f} "
              f"worker_rss_mb={max(done['worker_peaks_mb'] or [0]):.0f} kill_cost_s={cost:.1f} "
              f"hung={str(first['hung']).lower()}")
        return 0 if lost == 0 and duplicated == 0 and acct["balanced"] else 1
    finally:
        services.close()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
