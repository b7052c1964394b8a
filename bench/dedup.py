"""Near-duplicate benchmark: xlcorpus's dedup stage against datatrove's MinHash
pipeline on the same generated corpus with planted near-duplicates.

    python bench/dedup.py [--docs 200000] [--files 8] [--threshold 0.8] [--rss-docs 20000] [--rss-scale 10]
                          [--skip-datatrove]

The corpus (seeded) mixes six scripts: Latin, Cyrillic, Arabic and Devanagari words
with spaces; Han and Thai without (character shingles). Planted groups: variants of
a base document edited to a target Jaccard similarity in [0.82, 0.98] (true
near-duplicates), exact copies with other case and punctuation (J = 1), and hard
negatives edited to [0.5, 0.75]. The truth is the exact Jaccard similarity of every
pair inside a group, on the same shingles the stage uses (word 5-grams; character
5-grams for Han and Thai), computed here with plain Python sets.

Scores (per document): a document is a true duplicate when some other document has
exact J >= threshold with it. precision = removed true duplicates / removed;
recall = removed true duplicates / what an ideal run removes (each true cluster's
size - 1). Throughput: documents / wall second of the whole job (read JSONL, dedup,
write), xlcorpus on the DirectRunner in one process, datatrove's four MinHash steps
with one worker, same bands x rows, same shingle size. RSS: xlcorpus's peak at
``rss_docs`` and ``rss_scale`` times as many documents.

datatrove runs in its own virtualenv (bench/.venvs/datatrove, made on first use).
Last line: ``RESULT recall=R precision=P ratio_vs_datatrove=X rss_ratio=M``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {  # name: (alphabet, spaced, share of documents)
    "latin": ("abcdefghijklmnopqrstuvwxyz", True, 0.35),
    "cyrillic": ("абвгдежзийклмнопрстуфхцчшщыэюя", True, 0.15),
    "arabic": ("ابتثجحخدذرزسشصضطظعغفقكلمنهوي", True, 0.1),
    "devanagari": ("कखगघचछजझटठडढणतथदधनपफबभमयरलवशसह", True, 0.1),
    "han": ("".join(chr(c) for c in range(0x4E00, 0x4E00 + 3000)), False, 0.2),
    "thai": ("กขคฆงจฉชซฌญฎฏฐฑฒณดตถทธนบปผฝพฟภมยรลวศษสหฬอฮ", False, 0.1),
}
N = 5  # shingle size (words, or characters for Han and Thai)


# --- the corpus ----------------------------------------------------------------------------
def _units(script: str, rng: random.Random, vocab: dict[str, list[str]]) -> list[str]:
    alphabet, spaced, _ = SCRIPTS[script]
    if spaced:
        return [rng.choice(vocab[script]) for _ in range(rng.randint(30, 150))]
    return [rng.choice(alphabet) for _ in range(rng.randint(60, 300))]


def _join(script: str, units: list[str]) -> str:
    return " ".join(units) if SCRIPTS[script][1] else "".join(units)


def _edit(units: list[str], target: float, script: str, rng: random.Random, vocab) -> list[str]:
    """Substitute k units so that J ~ target: each substitution changes up to N shingles."""
    s = max(len(units) - N + 1, 1)
    k = max(1, round(s * (1 - target) / (N * (1 + target))))
    out = list(units)
    pool = vocab[script] if SCRIPTS[script][1] else SCRIPTS[script][0]
    for i in rng.sample(range(len(out)), min(k, len(out))):
        out[i] = rng.choice(pool)
    return out


def make_corpus(root: Path, docs: int, files: int, seed: int = 13) -> list[list[str]]:
    """Writes ``files`` JSONL.gz files; returns the planted groups (lists of ids)."""
    rng = random.Random(seed)
    vocab = {s: ["".join(rng.choice(a) for _ in range(rng.randint(2, 9))) for _ in range(8000)]
             for s, (a, spaced, _) in SCRIPTS.items() if spaced}
    names, weights = list(SCRIPTS), [v[2] for v in SCRIPTS.values()]
    records, groups = [], []
    while len(records) < docs:
        script = rng.choices(names, weights)[0]
        base = _units(script, rng, vocab)
        doc_id = f"{script}-{len(records):07d}"
        records.append((doc_id, _join(script, base)))
        roll = rng.random()
        members = [doc_id]
        if roll < 0.12:  # near-duplicates
            for _ in range(rng.randint(1, 3)):
                members.append(f"{doc_id}-near{len(members)}")
                records.append((members[-1], _join(script, _edit(base, rng.uniform(0.82, 0.98), script, rng, vocab))))
        elif roll < 0.15:  # exact copy, other case and punctuation
            members.append(f"{doc_id}-copy")
            records.append((members[-1], _join(script, base).upper() + " !!"))
        elif roll < 0.20:  # hard negative: similar, but below any sensible threshold
            members.append(f"{doc_id}-far")
            records.append((members[-1], _join(script, _edit(base, rng.uniform(0.5, 0.75), script, rng, vocab))))
        if len(members) > 1:
            groups.append(members)
    rng.shuffle(records)
    root.mkdir(parents=True, exist_ok=True)
    outs = [gzip.open(root / f"part-{i:03d}.jsonl.gz", "wt", encoding="utf-8") for i in range(files)]
    for n, (doc_id, text) in enumerate(records[:docs]):
        outs[n % files].write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
    for f in outs:
        f.close()
    kept = {doc_id for doc_id, _ in records[:docs]}
    return [[m for m in g if m in kept] for g in groups if sum(m in kept for m in g) > 1]


def read_texts(root: Path) -> dict[str, str]:
    texts = {}
    for path in sorted(root.glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                texts[r["id"]] = r["text"]
    return texts


# --- the truth -----------------------------------------------------------------------------
def shingle_set(text: str) -> set:
    t = " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split())
    if t and not t[0].isascii() and (0x4E00 <= ord(t[0]) < 0xA000 or 0x0E00 <= ord(t[0]) < 0x0E80):
        chars = t.replace(" ", "")
        return {chars[i:i + N] for i in range(max(len(chars) - N + 1, 1))}
    words = t.split()
    return {tuple(words[i:i + N]) for i in range(max(len(words) - N + 1, 1))}


def truth(groups: list[list[str]], texts: dict[str, str], threshold: float) -> tuple[list[set[str]], int]:
    """True clusters (exact J >= threshold, joined transitively) and the ideal removal count."""
    clusters = []
    for g in groups:
        sets = {m: shingle_set(texts[m]) for m in g}
        parent = {m: m for m in g}

        def find(x):
            while parent[x] != x:
                x = parent[x]
            return x
        for i, a in enumerate(g):
            for b in g[i + 1:]:
                j = len(sets[a] & sets[b]) / len(sets[a] | sets[b])
                if j >= threshold:
                    parent[find(a)] = find(b)
        by_root: dict[str, set[str]] = {}
        for m in g:
            by_root.setdefault(find(m), set()).add(m)
        clusters.extend(c for c in by_root.values() if len(c) > 1)
    return clusters, sum(len(c) - 1 for c in clusters)


def score(removed: set[str], clusters: list[set[str]], ideal: int) -> dict:
    dup = set().union(*clusters) if clusters else set()
    right = removed & dup
    recalled = sum(min(len(c & removed), len(c) - 1) for c in clusters)
    return {"removed": len(removed), "removed_true": len(right),
            "precision": len(right) / len(removed) if removed else 1.0, "recall": recalled / ideal if ideal else 1.0}


# --- the two tools -------------------------------------------------------------------------
def xlcorpus_config(glob: str, out: str, threshold: float) -> dict:
    return {"stages": ["dedup"], "input": {"paths": [glob], "batch_size": 4096},
            "dedup": {"exact": {"enabled": False}, "minhash": {"enabled": True, "threshold": threshold,
                                                               "word_ngram": N, "char_ngram": N}},
            "output": {"path": out, "overwrite": True}}


def child(args) -> None:
    import datasets

    from xlcorpus.pipelines.config import load_config
    from xlcorpus.pipelines.corpus import run_corpus

    start = time.perf_counter()
    report = run_corpus(load_config(data=xlcorpus_config(args.glob, args.out, args.threshold)))
    seconds = time.perf_counter() - start
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    rejected = datasets.load_from_disk(str(Path(args.out) / "_rejected"))
    removed = [r["id"] for r in rejected if r["reason"] == "near_duplicate"]
    Path(args.result).write_text(json.dumps({
        "seconds": seconds, "docs_in": report["accounting"]["in"], "removed_ids": removed, "peak_rss_mb": rss,
        "balanced": report["accounting"]["balanced"], "dedup": report["dedup"], "model": report["models"]["dedup"]}))


def run_xlcorpus(glob: str, out: Path, threshold: float) -> dict:
    result = out.with_suffix(".json")
    subprocess.run([sys.executable, __file__, "--child", "--glob", glob, "--out", str(out), "--result", str(result),
                    "--threshold", str(threshold)], check=True)
    return json.loads(result.read_text())


def run_datatrove(input_dir: Path, work: Path, bands: int, rows: int) -> dict:
    sys.path.insert(0, str(HERE))
    from datatrove_env import ensure_venv

    python = ensure_venv()
    result = work / "datatrove.json"
    subprocess.run([str(python), str(HERE / "datatrove_minhash.py"), "--input", str(input_dir), "--work",
                    str(work / "datatrove"), "--bands", str(bands), "--rows", str(rows), "--ngram", str(N),
                    "--workers", "1", "--out", str(result)], check=True)
    return json.loads(result.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--rss-docs", type=int, default=20_000)
    ap.add_argument("--rss-scale", type=int, default=10)
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--glob", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory(prefix="xlcorpus-dedup-bench-") as tmp:
        work = Path(tmp)
        corpus = work / "corpus"
        t = time.perf_counter()
        groups = make_corpus(corpus, args.docs, args.files)
        texts = read_texts(corpus)
        clusters, ideal = truth(groups, texts, args.threshold)
        print(f"corpus: {len(texts)} documents in {args.files} files, {len(groups)} planted groups, "
              f"{len(clusters)} true clusters at J >= {args.threshold}, ideal removal {ideal} "
              f"({time.perf_counter() - t:.1f} s to generate and score)", flush=True)

        ours = run_xlcorpus(str(corpus / "*.jsonl.gz"), work / "xlcorpus", args.threshold)
        assert ours["balanced"] and ours["docs_in"] == len(texts), ours["docs_in"]
        ours_score = score(set(ours["removed_ids"]), clusters, ideal)
        model = ours["model"]["minhash"]
        rows = [("xlcorpus", ours["seconds"], ours["peak_rss_mb"], ours_score)]
        if not args.skip_datatrove:
            theirs = run_datatrove(corpus, work, model["bands"], model["rows"])
            assert theirs["docs_in"] == len(texts), theirs["docs_in"]
            rows.append((f"datatrove {theirs.get('datatrove_version', '')}", theirs["seconds"],
                         theirs["peak_rss_mb"], score(set(theirs["removed_ids"]), clusters, ideal)))

        # memory at 1x and 10x input, each in a fresh process
        small, large = work / "rss-small", work / "rss-large"
        make_corpus(small, args.rss_docs, args.files, seed=29)
        make_corpus(large, args.rss_docs * args.rss_scale, args.files, seed=29)
        rss_small = run_xlcorpus(str(small / "*.jsonl.gz"), work / "xl-small", args.threshold)["peak_rss_mb"]
        rss_large = run_xlcorpus(str(large / "*.jsonl.gz"), work / "xl-large", args.threshold)["peak_rss_mb"]

    print(f"\nMinHash at J >= {args.threshold}: {model['bands']} bands x {model['rows']} rows of {model['num_perm']} "
          f"permutations, verify cutoff {model['verify_cutoff']}; S-curve {model['s_curve']}")
    print(f"{'tool':<18} {'docs/s':>9} {'seconds':>8} {'RSS MB':>8} {'removed':>8} {'precision':>9} {'recall':>7}")
    for name, seconds, rss, s in rows:
        print(f"{name:<18} {len(texts) / seconds:>9.0f} {seconds:>8.1f} {rss:>8.0f} {s['removed']:>8} "
              f"{s['precision']:>9.4f} {s['recall']:>7.4f}")
    near = ours["dedup"]["near"]
    print(f"xlcorpus: {near['candidate_pairs']} candidate pairs, {near['verified_pairs']} verified, "
          f"{near['clusters']} clusters {near['cluster_sizes']}, not converged {near['not_converged']}")
    print(f"xlcorpus peak RSS: {rss_small:.0f} MB at {args.rss_docs} docs, {rss_large:.0f} MB at "
          f"{args.rss_docs * args.rss_scale} docs")
    ratio = (rows[0][1] and rows[1][1] / rows[0][1]) if len(rows) > 1 else float("nan")
    print(f"RESULT recall={ours_score['recall']:.4f} precision={ours_score['precision']:.4f} "
          f"ratio_vs_datatrove={ratio:.2f} rss_ratio={rss_large / rss_small:.2f}")


if __name__ == "__main__":
    main()
