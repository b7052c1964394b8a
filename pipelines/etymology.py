"""Training and evaluation of the per-word origin classifier: ``xlcorpus etymology
train|evaluate``.

``fit`` trains an ``OriginClassifier`` (the run-time model in
``xlcorpus.transforms.stages.transliterate.origin``) from a labelled word list: the
fastText n-gram model (in a child process, see ``_train_fasttext``) and the context
model, a multinomial logistic regression (``fit_softmax``) cross-fitted over sentence
folds. ``cross_validate`` splits by sentence (no sentence on both sides).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xlcorpus.transforms.stages.transliterate.features import (
    LABEL_PREFIX, LETTER, Lookup, context_features, ngram_proba, ngram_text, onehot, renumber, run_starts,
    sentence_runs,
)
from xlcorpus.transforms.stages.transliterate.origin import OriginClassifier, OriginOptions

# fastText's DenseMatrix::uniform initialises one tenth of the input matrix per training
# thread and leaves the rest as malloc returned it. In a process that has freed memory
# before, that is stale heap data: models differ from run to run and training now and
# then stops with "Encountered NaN". A fresh process whose large allocations are all
# fresh mmap pages (zeros) trains reproducibly, so training runs in a child process.
_TRAIN_SCRIPT = """\
import json, sys
import fasttext
a = json.loads(sys.argv[1])
fasttext.train_supervised(a["input"], **a["params"]).save_model(a["output"])
"""


def _train_fasttext(lines: Sequence[str], opts: OriginOptions, workdir: str):
    """Train a supervised fastText model on ``__label__i text`` lines (child process)."""
    import fasttext

    data, out = os.path.join(workdir, "train.txt"), os.path.join(workdir, "model.bin")
    with open(data, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    params = {"minn": opts.minn, "maxn": opts.maxn, "dim": opts.dim, "epoch": opts.epoch, "lr": opts.lr,
              "bucket": opts.bucket, "wordNgrams": 1, "minCount": 1, "loss": "softmax",
              "thread": 1, "seed": opts.seed, "verbose": 0}  # thread=1: reproducible
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}  # glibc: no heap reuse for big blocks
    done = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT,
                           json.dumps({"input": data, "output": out, "params": params})],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"fastText training failed: {done.stderr.strip()[-2000:]}")
    model = fasttext.load_model(out)
    os.remove(data)
    os.remove(out)
    return model


# --- multinomial logistic regression (Newton's method) --------------------------------
def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax(X: np.ndarray, y: np.ndarray, n_classes: int, l2: float, max_iter: int = 100,
                tol: float = 1e-8) -> np.ndarray:
    """Weights (features x classes) minimising summed cross-entropy + l2/2 |W|^2.

    Newton steps with backtracking: exact, deterministic, a few hundred weights at most.
    """
    n, d = X.shape
    W = np.zeros((d, n_classes))
    Y = onehot(y, n_classes)

    def objective(W):
        Z = X @ W
        zmax = Z.max(axis=1, keepdims=True)
        lse = (zmax + np.log(np.exp(Z - zmax).sum(axis=1, keepdims=True)))[:, 0]
        return float((lse - (Z * Y).sum(axis=1)).sum() + 0.5 * l2 * (W * W).sum())

    f = objective(W)
    for _ in range(max_iter):
        P = _softmax(X @ W)
        G = X.T @ (P - Y) + l2 * W
        if np.abs(G).max() < tol * max(n, 1):
            break
        H = np.empty((n_classes, d, n_classes, d))
        for a in range(n_classes):
            for b in range(a, n_classes):
                w = P[:, a] * ((a == b) - P[:, b])
                # einsum, not @: multithreaded BLAS on these small products is ~30x
                # slower than one core when the machine is busy.
                block = np.einsum("ni,nj->ij", X * w[:, None], X)
                H[a, :, b, :] = block
                H[b, :, a, :] = block.T
        H = H.reshape(n_classes * d, n_classes * d) + l2 * np.eye(n_classes * d)
        step = np.linalg.solve(H, G.T.reshape(-1)).reshape(n_classes, d).T
        t = 1.0
        while True:
            candidate = W - t * step
            fc = objective(candidate)
            if fc <= f - 1e-4 * t * float((G * step).sum()) or t < 1e-8:
                break
            t *= 0.5
        W, f_old, f = candidate, f, fc
        if f_old - f < tol * max(abs(f_old), 1.0):
            break
    return W


def group_kfold(groups: Sequence, k: int, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) for k folds; every group (sentence) lies in one test fold.

    Groups are shuffled with ``seed`` and dealt round-robin, so folds hold about the
    same number of sentences.
    """
    order = list(dict.fromkeys(groups))
    if k < 2 or k > len(order):
        raise ValueError(f"cannot make {k} folds from {len(order)} groups")
    random.Random(seed).shuffle(order)
    fold_of = {g: i % k for i, g in enumerate(order)}
    folds = np.fromiter((fold_of[g] for g in groups), np.int64, len(groups))
    for f in range(k):
        yield np.flatnonzero(folds != f), np.flatnonzero(folds == f)


# --- training -----------------------------------------------------------------------
def fit(tokens: Sequence[str], labels: Sequence[str], sentence_ids: Sequence | None = None,
        options: OriginOptions | None = None) -> OriginClassifier:
    """An ``OriginClassifier`` trained on tokens in running order with their labels."""
    tokens, labels = [str(t) for t in tokens], [str(label) for label in labels]
    if len(tokens) != len(labels):
        raise ValueError(f"{len(tokens)} tokens but {len(labels)} labels")
    if not tokens:
        raise ValueError("no training tokens")
    opts = options or OriginOptions()
    names = sorted(set(labels))
    index = {label: i for i, label in enumerate(names)}
    y = np.array([index[label] for label in labels], np.int64)
    runs = sentence_runs(sentence_ids, len(tokens))
    symbol = _symbol_label(tokens, y, opts)
    with tempfile.TemporaryDirectory(prefix="xlcorpus-etymology-") as workdir:
        context = _fit_context(tokens, y, runs, len(names), symbol, opts, workdir)
        ngram = _train_fasttext(_lines(tokens, y, runs), opts, workdir)
    return OriginClassifier(opts, names, ngram, Lookup.build(tokens, y, len(names)), symbol, context)


def _symbol_label(tokens: Sequence[str], y: np.ndarray, opts: OriginOptions) -> int | None:
    letterless = [int(label) for t, label in zip(tokens, y) if not LETTER.search(t)]
    if not letterless:
        return None
    label, count = Counter(letterless).most_common(1)[0]
    return label if count >= opts.symbol_share * len(letterless) else None


def _lines(tokens: Sequence[str], y: np.ndarray, runs: np.ndarray) -> list[str]:
    initial = run_starts(runs)
    return [f"{LABEL_PREFIX}{label} {ngram_text(t, bool(first))}" for t, label, first in zip(tokens, y, initial)]


def _fit_context(tokens: list[str], y: np.ndarray, runs: np.ndarray, n_labels: int, symbol: int | None,
                 opts: OriginOptions, workdir: str) -> np.ndarray | None:
    """Cross-fit the n-gram model over sentence folds and train the context model on
    the held-out tokens that the inner training folds never saw."""
    n_runs = int(runs.max()) + 1
    if opts.inner_folds < 2 or n_runs < opts.inner_folds or n_labels < 2:
        return None
    X_parts, y_parts = [], []
    for train, test in group_kfold(runs.tolist(), opts.inner_folds, seed=opts.seed + 1):
        train_tokens = [tokens[i] for i in train]
        model = _train_fasttext(_lines(train_tokens, y[train], renumber(runs[train])), opts, workdir)
        lookup = Lookup.build(train_tokens, y[train], n_labels)
        test_tokens = [tokens[i] for i in test]
        test_runs = renumber(runs[test])
        initial = run_starts(test_runs)
        proba = ngram_proba(model, [ngram_text(t, bool(f)) for t, f in zip(test_tokens, initial)], n_labels)
        known = lookup.known(test_tokens, opts.lookup_share)
        X = context_features(test_tokens, test_runs, proba, known, lookup.lowercase)
        new = np.array([t not in lookup.exact and not (symbol is not None and not LETTER.search(t))
                        for t in test_tokens], bool)
        X_parts.append(X[new])
        y_parts.append(y[test][new])
    X, yy = np.vstack(X_parts), np.concatenate(y_parts)
    if len(yy) < opts.min_context_examples or len(set(yy.tolist())) < 2:
        return None
    return fit_softmax(X, yy, n_labels, opts.context_l2)


# --- cross-validation ------------------------------------------------------------------
@dataclass
class CrossValidation:
    """Token accuracy of k-fold cross-validation grouped by sentence."""

    folds: int
    total: int = 0
    correct: int = 0
    seen_total: int = 0
    seen_correct: int = 0
    per_class: dict[str, list[int]] = field(default_factory=dict)  # label -> [correct, total]
    seconds: float = 0.0

    @property
    def unseen_total(self) -> int:
        return self.total - self.seen_total

    @property
    def unseen_correct(self) -> int:
        return self.correct - self.seen_correct

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else float("nan")

    @property
    def seen_accuracy(self) -> float:
        return self.seen_correct / self.seen_total if self.seen_total else float("nan")

    @property
    def unseen_accuracy(self) -> float:
        return self.unseen_correct / self.unseen_total if self.unseen_total else float("nan")

    def class_accuracy(self, label: str) -> float:
        ok, n = self.per_class[label]
        return ok / n if n else float("nan")

    def to_dict(self) -> dict:
        return {"folds": self.folds, "tokens": self.total, "accuracy": self.accuracy,
                "seen": {"tokens": self.seen_total, "accuracy": self.seen_accuracy},
                "unseen": {"tokens": self.unseen_total, "accuracy": self.unseen_accuracy},
                "per_class": {label: {"tokens": n, "accuracy": ok / n if n else None}
                              for label, (ok, n) in sorted(self.per_class.items())},
                "seconds": round(self.seconds, 1)}


def cross_validate(rows: Sequence[Mapping[str, str]], k: int = 10, label_column: str = "category_merged",
                   group_column: str | None = "id", token_column: str = "token", seed: int = 0,
                   options: OriginOptions | None = None) -> CrossValidation:
    """k-fold cross-validation with whole sentences (``group_column``) in each test fold.

    Rows are in running order. A test token counts as seen when the same string occurs in
    that fold's training rows. ``group_column=None``: every row is its own group.
    """
    start = time.perf_counter()
    tokens = [str(r[token_column]) for r in rows]
    labels = [str(r[label_column]) for r in rows]
    groups = [r[group_column] for r in rows] if group_column else list(range(len(rows)))
    options = options or OriginOptions(seed=seed)
    report = CrossValidation(folds=k, per_class={label: [0, 0] for label in sorted(set(labels))})
    for train, test in group_kfold(groups, k, seed):
        clf = fit([tokens[i] for i in train], [labels[i] for i in train],
                  [groups[i] for i in train] if group_column else None, options)
        test_tokens = [tokens[i] for i in test]
        pred = clf.predict(test_tokens, [groups[i] for i in test] if group_column else None)
        for token, i, p, seen in zip(test_tokens, test, pred, clf.is_seen(test_tokens)):
            ok = p == labels[i]
            report.total += 1
            report.correct += ok
            report.seen_total += seen
            report.seen_correct += ok and seen
            report.per_class[labels[i]][0] += ok
            report.per_class[labels[i]][1] += 1
    report.seconds = time.perf_counter() - start
    return report


def format_report(report: CrossValidation) -> str:
    lines = [f"{report.folds}-fold cross-validation by sentence, {report.total} tokens ({report.seconds:.1f} s)",
             f"  overall   {100 * report.accuracy:6.2f}%  ({report.correct}/{report.total})",
             f"  seen      {100 * report.seen_accuracy:6.2f}%  ({report.seen_correct}/{report.seen_total})",
             f"  unseen    {100 * report.unseen_accuracy:6.2f}%  ({report.unseen_correct}/{report.unseen_total})",
             "  per class:"]
    width = max((len(label) for label in report.per_class), default=0)
    for label, (ok, n) in sorted(report.per_class.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"    {label:<{width}}  {100 * ok / n if n else float('nan'):6.2f}%  ({ok}/{n})")
    return "\n".join(lines)


# --- data files and CLI ------------------------------------------------------------------
def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a labelled word list with a header line: TSV (no quoting; tokens such as
    ``"`` are data), or CSV when the file name ends in .csv."""
    path = Path(path)
    with open(path, encoding="utf-8", newline="") as f:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(f)
        else:
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [row for row in reader]


def _check_columns(rows: Sequence[Mapping[str, str]], path: str, *columns: str | None) -> None:
    if not rows:
        raise ValueError(f"{path}: no rows")
    missing = [c for c in columns if c and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (columns: {', '.join(rows[0])})")


def cli(argv: list[str] | None = None) -> int:
    """``etymology train|evaluate``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="xlcorpus etymology", allow_abbrev=False,
                                     description="per-word origin classifier from a labelled word list")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_ in (("train", "train a model and save it"),
                        ("evaluate", "k-fold cross-validation grouped by sentence")):
        p = sub.add_parser(name, allow_abbrev=False, help=help_)
        p.add_argument("--data", required=True, help="TSV (or .csv) with a header line")
        p.add_argument("--label-column", required=True)
        p.add_argument("--token-column", default="token")
        p.add_argument("--sentence-column", default=None,
                       help="sentence id column; rows in running order give the model context")
        p.add_argument("--seed", type=int, default=0)
        if name == "train":
            p.add_argument("--out", required=True, help="model directory to write")
            p.add_argument("--quantize", action="store_true", help="~7x smaller n-gram model, slightly less accurate")
        else:
            p.add_argument("--folds", type=int, default=10)
            p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        rows = read_rows(args.data)
        _check_columns(rows, args.data, args.token_column, args.label_column, args.sentence_column)
        options = OriginOptions(seed=args.seed)
        if args.command == "train":
            start = time.perf_counter()
            clf = fit([r[args.token_column] for r in rows], [r[args.label_column] for r in rows],
                      [r[args.sentence_column] for r in rows] if args.sentence_column else None, options)
            out = clf.save(args.out, quantize=args.quantize)
            print(f"trained on {len(rows)} tokens, {len(clf.labels)} labels "
                  f"({time.perf_counter() - start:.1f} s) -> {out}")
        else:
            report = cross_validate(rows, k=args.folds, label_column=args.label_column,
                                    group_column=args.sentence_column, token_column=args.token_column,
                                    seed=args.seed, options=options)
            print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    except (OSError, ValueError, RuntimeError) as e:
        print(f"etymology {args.command}: {e}", file=sys.stderr)
        return 1 if isinstance(e, RuntimeError) else 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
