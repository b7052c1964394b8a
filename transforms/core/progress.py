"""Live progress of a local run: rows read, and rows in / kept per stage, per second.

Beam's metrics reach the driver only when the DirectRunner's run returns, so the
workers report progress themselves: each worker process keeps running totals and,
at most twice a second, rewrites one small JSON file in the folder named by
``XLCORPUS_PROGRESS_DIR`` (set by the driver; worker processes of the
multi-processing DirectRunner inherit it). ``LiveProgress`` on the driver sums the
files into a rich table. Without the variable nothing is written: remote workers,
tests and CI logs stay quiet.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path

ENV = "XLCORPUS_PROGRESS_DIR"
INTERVAL = 0.5  # seconds between a worker's writes, and between the driver's reads

_lock = threading.Lock()
_state: dict = {"dir": None, "totals": {}, "last_write": 0.0}  # this process's totals for one run's folder


def tick(stage: str, name: str, rows: int) -> None:
    """Add ``rows`` to this process's ``stage``/``name`` total (``in``, ``kept``, ``read``)."""
    directory = os.environ.get(ENV)
    if not directory or not rows:
        return
    with _lock:
        if _state["dir"] != directory:  # a new run in this process starts from zero
            _state.update(dir=directory, totals=defaultdict(lambda: defaultdict(int)), last_write=0.0)
        _state["totals"][stage][name] += rows
        now = time.monotonic()
        if now - _state["last_write"] < INTERVAL:
            return
        _state["last_write"] = now
        snapshot = json.dumps(_state["totals"])
    _write(directory, snapshot)


def _write(directory: str, snapshot: str) -> None:
    path = Path(directory) / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(snapshot)
        tmp.replace(path)  # readers never see half a file
    except OSError:  # progress is best-effort: never fail a bundle over it
        pass


def flush(directory: str) -> None:
    """Write this process's totals now (the driver, whose in-process workers may have
    ticked less than ``INTERVAL`` ago)."""
    with _lock:
        if _state["dir"] == directory:
            _write(directory, json.dumps(_state["totals"]))


def read_totals(directory: str) -> dict[str, dict[str, int]]:
    """The sum of every worker's totals in ``directory``."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in Path(directory).glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for stage, counts in data.items():
            for name, value in counts.items():
                out[stage][name] += value
    return out


class LiveProgress:
    """Context manager: while the job runs, a live table of rows and rows/s per stage."""

    def __init__(self, directory: str, stages: list[str], console=None):
        self.directory, self.stages, self.console = directory, stages, console
        self.stop = threading.Event()

    def table(self, totals: dict, seconds: float):
        from rich.table import Table

        table = Table(title=f"running: {seconds:.0f} s")
        for col in ("stage", "in", "kept", "rows/s"):
            table.add_column(col, justify="right" if col != "stage" else "left")
        read = totals.get("read", {}).get("read", 0)
        table.add_row("read", f"{read:,}", f"{read:,}", f"{read / max(seconds, 1e-9):,.0f}")
        for stage in self.stages:
            counts = totals.get(stage, {})
            table.add_row(stage, f"{counts.get('in', 0):,}", f"{counts.get('kept', 0):,}",
                          f"{counts.get('in', 0) / max(seconds, 1e-9):,.0f}")
        return table

    def __enter__(self):
        from rich.live import Live

        os.makedirs(self.directory, exist_ok=True)
        os.environ[ENV] = self.directory
        self.started = time.monotonic()
        self.live = Live(self.table({}, 0), console=self.console, refresh_per_second=4, transient=True)
        self.live.__enter__()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while not self.stop.wait(INTERVAL):
            self.live.update(self.table(read_totals(self.directory), time.monotonic() - self.started))

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        flush(self.directory)
        self.last = read_totals(self.directory)
        self.live.__exit__(*exc)
        os.environ.pop(ENV, None)
        return False
