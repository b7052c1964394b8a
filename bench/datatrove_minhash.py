"""datatrove's 4-step MinHash near-duplicate pipeline on a folder of JSONL(.gz) documents.

Run by the datatrove venv's python (bench/datatrove_env.py makes it), never by the project's:
this file imports datatrove and nothing of xlcorpus.

    python bench/datatrove_minhash.py --input DIR --work DIR --bands B --rows R --ngram N \
        --workers W --out RESULT.json [--language eng] [--precision 64] [--hash-fc xxhash]

DIR holds ``*.jsonl`` / ``*.jsonl.gz`` (also .zst) files, one document a line with ``id`` and ``text``.
The steps, as in datatrove's examples/minhash_deduplication.py, each its own LocalPipelineExecutor
chained with ``depends=``:

1. JsonlReader -> MinhashDedupSignature   tasks = number of input files, workers = W
2. MinhashDedupBuckets                    tasks = B (one per band), workers = W
3. MinhashDedupCluster                    tasks = 1
4. JsonlReader -> MinhashDedupFilter(exclusion_writer=JsonlWriter(removed/)) -> JsonlWriter(kept/)
                                          tasks = as in step 1 (the ranks must match), workers = W

MinhashConfig(n_grams=N, num_buckets=B, hashes_per_bucket=R, seed=1, hash_config=HashConfig(precision, hash_fc)).
Shingles: the text is simplified (lowercase, digits -> 0, punctuation -> space, whitespace squeezed,
NFD with combining marks dropped), word-tokenized by the language's tokenizer, and every run of N
consecutive tokens, joined by one space, is hashed (xxhash64 by default).  A document with fewer than
N tokens has no shingle, gets no signature and is always kept.

The 4 steps are timed together (``seconds``) and one by one (``step_seconds``); the work folder's
step outputs are cleared first so datatrove's skip-completed logic never skips a step.  Peak memory
is the largest sum of RSS over this process and all its descendants (forkserver, pool workers,
the multiprocess manager), sampled every 0.1 s from /proc/PID/smaps_rollup (``peak_rss_mb``; the
PSS sum, which counts pages shared between forked processes once, is ``peak_pss_mb``);
getrusage's maxrss (largest single process) is reported beside them.  Ids of kept and removed documents are read back from the
writers' output after the clock stops.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs a hub; make sure nothing tries
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

STEP_DIRS = ("signatures", "buckets", "remove_ids", "kept", "removed", "logs")
INPUT_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst")


# ---------------------------------------------------------------- memory of the process tree

def _tree_pids(root_pid: int) -> list[int]:
    """``root_pid`` and every descendant (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
            # field 2 (comm) may hold spaces: split after its closing parenthesis
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    pids, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        pids.append(pid)
        stack.extend(children.get(pid, ()))
    return pids


def _tree_memory(root_pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over the process tree.  RSS counts a page shared by
    forked workers once per process; PSS splits it between them."""
    rss = pss = 0
    for pid in _tree_pids(root_pid):
        try:
            with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
                for line in f:
                    if line.startswith(b"Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith(b"Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            continue
    return rss, pss


class TreeRssSampler:
    """Background thread: the largest process-tree RSS (and PSS) seen, overall and since the last ``mark()``."""

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.peak = self.peak_pss = 0
        self.step_peak = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.available = os.path.exists("/proc/self/smaps_rollup")

    def _sample(self):
        rss, pss = _tree_memory(os.getpid())
        with self._lock:
            self.peak = max(self.peak, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.step_peak = max(self.step_peak, rss)

    def _loop(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self):
        if self.available:
            self._sample()
            self._thread.start()
        return self

    def mark(self) -> int:
        """RSS peak of the step that just ended (bytes); starts a new step."""
        if not self.available:
            return 0
        self._sample()
        with self._lock:
            value, self.step_peak = self.step_peak, 0
        return value

    def stop(self):
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()


def _maxrss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------- input / output helpers


def input_files(folder: Path) -> list[str]:
    """Input files, relative to ``folder``, sorted (datatrove shards files[rank::tasks] in this order)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.endswith(INPUT_SUFFIXES):
            found.append(path.relative_to(folder).as_posix())
    return found


def _open_text(path: str):
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if path.endswith(".zst"):
        import zstandard  # only if the caller has .zst inputs (datatrove needs it then too)

        return zstandard.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_ids(folder: Path) -> list:
    """``id`` of every document the JsonlWriter wrote into ``folder``, in rank then file order."""
    import orjson

    ids = []
    for path in sorted(glob.glob(str(folder / "**" / "*.jsonl*"), recursive=True)):
        with _open_text(path) as f:
            for line in f:
                if line.strip():
                    ids.append(orjson.loads(line)["id"])
    return ids


def count_input_docs(folder: Path, files: list[str]) -> tuple[int, int]:
    """(lines that are documents, those among them with no text: JsonlReader skips these)."""
    import orjson

    n = empty = 0
    for rel in files:
        with _open_text(str(folder / rel)) as f:
            for line in f:
                if not line.strip():
                    continue
                n += 1
                if not orjson.loads(line).get("text"):
                    empty += 1
    return n, empty


def _keep_id_adapter(self, document) -> dict:
    """JsonlWriter adapter: the default one drops every falsy field, so an id 0 or "" would vanish."""
    data = {"text": document.text, "id": document.id}
    if document.metadata:
        data["metadata"] = document.metadata
    return data


# ---------------------------------------------------------------- the pipeline


def run(args) -> dict:
    from importlib.metadata import version

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    in_dir = Path(args.input).resolve()
    work = Path(args.work).resolve()
    files = input_files(in_dir)
    if not files:
        raise SystemExit(f"no {'/'.join(INPUT_SUFFIXES)} files under {in_dir}")

    work.mkdir(parents=True, exist_ok=True)
    for name in STEP_DIRS:  # a stale completions/ folder would make datatrove skip a step
        shutil.rmtree(work / name, ignore_errors=True)
    paths_file = work / "input_files.txt"
    paths_file.write_text("".join(f"{rel}\n" for rel in files))

    config = MinhashConfig(
        n_grams=args.ngram,
        num_buckets=args.bands,
        hashes_per_bucket=args.rows,
        seed=args.seed,
        hash_config=HashConfig(precision=args.precision, hash_fc=args.hash_fc),
    )
    tasks = len(files)
    compression = None if args.compression == "none" else args.compression
    logs = work / "logs"

    def reader():
        # id_key="id": our id becomes Document.id; paths_file keeps exactly our input files, in order
        return JsonlReader(str(in_dir), paths_file=str(paths_file), id_key="id", text_key="text")

    start_method = args.start_method
    stage1 = LocalPipelineExecutor(
        pipeline=[reader(), MinhashDedupSignature(output_folder=str(work / "signatures"), config=config,
                                                  language=args.language)],
        tasks=tasks, workers=args.workers, logging_dir=str(logs / "signatures"), start_method=start_method,
    )
    stage2 = LocalPipelineExecutor(
        pipeline=[MinhashDedupBuckets(input_folder=str(work / "signatures"), output_folder=str(work / "buckets"),
                                      config=config)],
        tasks=config.num_buckets, workers=args.workers, logging_dir=str(logs / "buckets"),
        depends=stage1, start_method=start_method,
    )
    stage3 = LocalPipelineExecutor(
        pipeline=[MinhashDedupCluster(input_folder=str(work / "buckets"), output_folder=str(work / "remove_ids"),
                                      config=config)],
        tasks=1, workers=1, logging_dir=str(logs / "clusters"), depends=stage2, start_method=start_method,
    )
    stage4 = LocalPipelineExecutor(
        pipeline=[
            reader(),
            MinhashDedupFilter(
                input_folder=str(work / "remove_ids"),
                exclusion_writer=JsonlWriter(str(work / "removed"), compression=compression,
                                             adapter=_keep_id_adapter),
            ),
            JsonlWriter(str(work / "kept"), compression=compression, adapter=_keep_id_adapter),
        ],
        tasks=tasks, workers=args.workers, logging_dir=str(logs / "filter"), depends=stage3,
        start_method=start_method,
    )

    # Each stage is run in order (its depends= finds the previous one launched and completed), so
    # each can be timed; stage4.run() alone would run the same chain.
    sampler = TreeRssSampler().start()
    step_seconds, step_peak_mb = {}, {}
    t0 = time.perf_counter()
    for name, stage in (("signature", stage1), ("buckets", stage2), ("cluster", stage3), ("filter", stage4)):
        ts = time.perf_counter()
        stage.run()
        step_seconds[name] = round(time.perf_counter() - ts, 3)
        step_peak_mb[name] = round(sampler.mark() / 2**20, 1)
    total = time.perf_counter() - t0
    sampler.stop()

    maxrss_self = _maxrss_mb(resource.RUSAGE_SELF)
    maxrss_children = _maxrss_mb(resource.RUSAGE_CHILDREN)
    kept = read_ids(work / "kept")
    removed = read_ids(work / "removed")
    docs_in, docs_empty = count_input_docs(in_dir, files)
    return {
        "docs_in": docs_in,
        "docs_read": len(kept) + len(removed),  # docs_in less those with no text (JsonlReader skips them)
        "docs_without_text": docs_empty,
        "kept": len(kept),
        "removed": len(removed),
        "kept_ids": kept,
        "removed_ids": removed,
        "seconds": round(total, 3),
        "step_seconds": step_seconds,
        "peak_rss_mb": round(sampler.peak / 2**20, 1) if sampler.available else round(
            max(maxrss_self, maxrss_children), 1),
        "peak_rss_how": "sum of RSS over the process tree, sampled every 0.1 s" if sampler.available
        else "max(getrusage SELF, CHILDREN) maxrss: largest single process",
        "peak_pss_mb": round(sampler.peak_pss / 2**20, 1) if sampler.available else None,
        "step_peak_rss_mb": step_peak_mb,
        "maxrss_self_mb": round(maxrss_self, 1),
        "maxrss_children_mb": round(maxrss_children, 1),  # largest reaped child (pool workers are the forkserver's)
        "datatrove_version": version("datatrove"),
        "python": sys.version.split()[0],
        "config": {
            "bands": config.num_buckets,
            "rows": config.hashes_per_bucket,
            "ngram": config.n_grams,
            "seed": config.seed,
            "precision": config.hash_config.precision,
            "hash_fc": config.hash_config.hash_fc,
            "language": args.language,
            "word_tokenizer": _tokenizer_name(args.language),
            "norm": {k: v for k, v in vars(config.norm_config).items()},
            "tasks": tasks,
            "bucket_tasks": config.num_buckets,
            "workers": args.workers,
            "input_files": len(files),
            "output_compression": args.compression,
            "start_method": start_method,
        },
    }


def _tokenizer_name(language: str) -> str:
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    tok = load_word_tokenizer(language)
    inner = getattr(tok, "language", None)
    return f"{type(tok).__name__}({inner})" if inner else type(tok).__name__


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="folder of JSONL(.gz) files with id and text")
    p.add_argument("--work", required=True, help="work folder (its step subfolders are cleared first)")
    p.add_argument("--bands", type=int, required=True, help="MinhashConfig.num_buckets")
    p.add_argument("--rows", type=int, required=True, help="MinhashConfig.hashes_per_bucket")
    p.add_argument("--ngram", type=int, required=True, help="MinhashConfig.n_grams (words per shingle)")
    p.add_argument("--workers", type=int, default=1, help="LocalPipelineExecutor workers")
    p.add_argument("--out", required=True, help="result JSON")
    p.add_argument("--language", default="eng",
                   help="signature step's language: picks datatrove's word tokenizer (default eng: spacy.blank('en'))")
    p.add_argument("--precision", type=int, choices=(32, 64), default=64, help="HashConfig.precision")
    p.add_argument("--hash-fc", choices=("xxhash", "sha1"), default="xxhash", help="HashConfig.hash_fc")
    p.add_argument("--seed", type=int, default=1, help="MinhashConfig.seed")
    p.add_argument("--compression", choices=("gzip", "none"), default="gzip",
                   help="JsonlWriter compression of kept/removed output (datatrove's default: gzip)")
    p.add_argument("--start-method", default="forkserver", choices=("forkserver", "fork", "spawn"),
                   help="LocalPipelineExecutor start_method (datatrove's default: forkserver)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")

    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_ids")}, ensure_ascii=False),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
