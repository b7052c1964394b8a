"""The benchmark's inputs and the xlcorpus jobs it runs: NER files and saved datasets
of the synthetic pair, ``xlcorpus project`` / ``xlcorpus finetune --task ner`` as
subprocesses (the user's commands, not the stages' internals), and their outputs
read back as tags per example id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def iob2_names(labels) -> list[str]:
    """``O, B-x, I-x, ...`` in the order ``xlcorpus project --labels`` gives them."""
    return ["O"] + [f"{p}-{lab}" for lab in labels for p in ("B", "I")]


def write_ner_jsonl(rows: list[dict], path: Path) -> Path:
    """``{"id", "text", "spans"}`` per line (the projection job's JSONL input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def save_tagged(ids: list[str], tokens: list[list[str]], tags: list[list[str]], names: list[str], path: Path) -> Path:
    """A saved dataset with ``tokens`` and ``ner_tags`` (``Sequence(ClassLabel)``):
    what ``xlcorpus finetune --task ner`` reads, here for gold (not projected) data."""
    import datasets

    feats = datasets.Features({"id": datasets.Value("string"), "tokens": datasets.Sequence(datasets.Value("string")),
                               "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    index = {n: k for k, n in enumerate(names)}
    ds = datasets.Dataset.from_dict({"id": ids, "tokens": tokens, "ner_tags": [[index[t] for t in ts] for ts in tags]},
                                    features=feats)
    if path.exists():
        shutil.rmtree(path)
    ds.save_to_disk(str(path))
    return path


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "xlcorpus"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "xlcorpus.pipelines.cli"]


def run_cli(args: list[str], env: dict | None = None, log_path: Path | None = None) -> float:
    """Runs ``xlcorpus ARGS``; returns its wall time. The repository root is put on
    PYTHONPATH so ``--predictor bench.downstream.predictor:...`` imports."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in full_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    t0 = time.perf_counter()
    proc = subprocess.run(_cli() + args, env=full_env, capture_output=True, text=True)
    secs = time.perf_counter() - t0
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"xlcorpus {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return secs


def project(input_path: Path, out: Path, model: Path, method: str, labels, mode: str = "translate-train",
            reverse_model: Path | None = None, predictor: str | None = None, env: dict | None = None,
            threads: int = 1) -> float:
    args = ["project", "--input", str(input_path), "--model", str(model), "--convention", "marian", "--no-source-eos",
            "--method", method, "--mode", mode, "--labels", ",".join(labels), "--output", str(out), "--overwrite"]
    if mode == "translate-test":
        args += ["--reverse-model", str(reverse_model), "--predictor", predictor]
    return run_cli(args, env={"OMP_NUM_THREADS": str(threads), **(env or {})}, log_path=out.parent / f"{out.name}.log")


def finetune_ner(dataset: Path, out: Path, tokenizer: Path, threads: int = 1) -> float:
    return run_cli(["finetune", "--task", "ner", "--dataset", str(dataset), "--tokenizer", str(tokenizer),
                    "--output", str(out), "--overwrite"], env={"OMP_NUM_THREADS": str(threads)},
                   log_path=out.parent / f"{out.name}.log")


def projected_tags(out: Path) -> tuple[dict[str, tuple[list[str], list[str]]], list[str], Counter]:
    """A projection output: ``{id: (tokens, tag names)}`` of the kept rows, the label
    names, and the rejected rows by reason."""
    import datasets

    ds = datasets.load_from_disk(str(out))
    names = ds.features["ner_tags"].feature.names
    t = ds.data.table
    rows = {i: (toks, [names[k] for k in tags]) for i, toks, tags in zip(
        t.column("id").to_pylist(), t.column("tokens").to_pylist(), t.column("ner_tags").to_pylist())}
    reasons: Counter = Counter()
    rej = out / "_rejected"
    if (rej / "state.json").exists():
        reasons.update(datasets.load_from_disk(str(rej)).data.table.column("reason").to_pylist())
    return rows, names, reasons


def finetune_split(out: Path, split: str = "train"):
    """The ``split`` of a ``finetune --task ner`` output and its label names."""
    import datasets

    ds = datasets.load_from_disk(str(out))[split]
    return ds, ds.features["ner_tags"].feature.names
