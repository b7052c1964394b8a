"""Benchmark: annotation throughput against a loopback chat-completions server that
answers every request after a fixed delay (a model's latency).

    python bench/annotate.py [--delay 0.05] [--rounds 30] [--concurrency 1 8 32]

For each concurrency c, N = c * rounds distinct one-stage ``classify`` requests are
sent, and requests/s is printed divided by the ideal c / delay, for:
- raw aiohttp: one session, a semaphore of c, ``gather`` of bare POSTs of the same
  request bodies (the library with nothing around it);
- xlcorpus: ``Annotator.annotate_texts`` (prompt rendering, rate-limit checks, retry
  wrapper, JSON parsing, schema validation, vote), no cache;
- xlcorpus + cache: the same with the SQLite answer cache on (every answer a miss,
  committed as it arrives).
Target: xlcorpus >= 0.8 of ideal at c = 32. The server runs in its own process so it
does not share this process's GIL.
"""

from __future__ import annotations

import os
import sys

# bench/ holds a tokenize.py that would shadow the standard library's: keep bench/ off
# the path before anything imports tokenize
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import argparse
import asyncio
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout: tests.llm_server

CONTENT = '{"label": "positive"}'


def start_server(delay: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.llm_server", "--delay", str(delay), "--content", CONTENT],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/v1"


async def raw_aiohttp(base_url: str, texts: list[str], concurrency: int) -> float:
    """The same request bodies as xlcorpus sends (rendered prompt, response_format)."""
    import aiohttp
    from xlcorpus.transforms.stages.annotate.tasks import load_task

    task = load_task("classify")
    payloads = [{"model": "bench", "messages": task.messages("extract", text=t), "temperature": 0.0,
                 "max_tokens": 512, "response_format": {"type": "json_schema", "json_schema": {
                     "name": "classify", "schema": task.response_schema, "strict": False}}} for t in texts]
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(payload: dict):
            async with sem, session.post(f"{base_url}/chat/completions", json=payload) as resp:
                await resp.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(p) for p in payloads))
        return time.perf_counter() - t0


def xlcorpus_run(base_url: str, texts: list[str], concurrency: int, cache_dir: str | None) -> float:
    from xlcorpus.transforms.stages.annotate.options import AnnotateOptions
    from xlcorpus.transforms.stages.annotate.stage import Annotator

    annotator = Annotator(AnnotateOptions(task="classify", model="bench", base_url=base_url, two_stage=False,
                                          concurrency=concurrency, cache_dir=cache_dir))
    t0 = time.perf_counter()
    results = annotator.annotate_texts(texts)
    elapsed = time.perf_counter() - t0
    assert all(r.status == "kept" for r in results), {r.status for r in results}
    assert annotator.stats()["requests"] == len(texts)
    annotator.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--delay", type=float, default=0.05)
    ap.add_argument("--rounds", type=int, default=30, help="requests per concurrency slot")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    args = ap.parse_args()
    proc, url = start_server(args.delay)
    try:
        xlcorpus_run(url, [f"warm-up {i}" for i in range(8)], 8, None)  # imports, first connections
        print(f"loopback server, {args.delay * 1000:.0f} ms per answer; requests/s divided by ideal "
              f"(concurrency / delay)")
        print(f"{'concurrency':>11} {'requests':>8} {'ideal/s':>8} {'raw aiohttp':>12} {'xlcorpus':>9} "
              f"{'xlcorpus+cache':>15}")
        for c in args.concurrency:
            n = c * args.rounds
            ideal = c / args.delay
            texts = [f"bench text {c}-{i}: a sentence to classify." for i in range(n)]
            raw = n / asyncio.run(raw_aiohttp(url, texts, c)) / ideal
            ours = n / xlcorpus_run(url, texts, c, None) / ideal
            with tempfile.TemporaryDirectory() as tmp:
                cached = n / xlcorpus_run(url, texts, c, tmp) / ideal
            print(f"{c:>11} {n:>8} {ideal:>8.0f} {raw:>12.2f} {ours:>9.2f} {cached:>15.2f}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
