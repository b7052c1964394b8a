"""The dedup stage: normalisation, shingles, MinHash, the grouping steps, and the Beam
passes that find duplicates across files (exact, near, CJK by character shingles)."""

from __future__ import annotations

import json
import random

import datasets
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlcorpus.pipelines.config import ConfigError, load_config
from xlcorpus.pipelines.corpus import run_corpus
from xlcorpus.schemas import DOCUMENT_SCHEMA
from xlcorpus.transforms.stages.dedup import groups, minhash, text
from xlcorpus.transforms.stages.dedup.options import DedupOptions, NormalizeOptions
from xlcorpus.transforms.stages.dedup.stage import Dedup

from .conftest import data_file_hashes, write_jsonl

RNG = random.Random(7)
VOCAB = ["".join(RNG.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(RNG.randint(3, 9))) for _ in range(4000)]


def _words(n: int, rng: random.Random) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


def _batch(texts: list[str], source: str = "f.jsonl", ids: list[str] | None = None) -> pa.RecordBatch:
    ids = ids or [f"d{i:03d}" for i in range(len(texts))]
    return pa.RecordBatch.from_pylist([{"id": i, "text": t, "source": source, "line": n + 1, "offset": 0, "meta": None}
                                       for n, (i, t) in enumerate(zip(ids, texts))], schema=DOCUMENT_SCHEMA)


def _jaccard(a: str, b: str, n: int = 5) -> float:
    def grams(s):
        w = s.split()
        return {tuple(w[i:i + n]) for i in range(max(len(w) - n + 1, 1))}
    x, y = grams(a), grams(b)
    return len(x & y) / len(x | y)


# --- normalisation and shingles ----------------------------------------------------------
def test_normalisation_folds_case_width_punctuation_and_space():
    out = text.normalize(pa.array(["Straße,  GROSS!", "strasse gross", "Ｈｅｌｌｏ\u00a0World…", "e\u0301te\u0301"]),
                         NormalizeOptions(form="NFKC"))
    assert out.to_pylist() == ["strasse gross", "strasse gross", "hello world", "été"]
    kept = text.normalize(pa.array(["Room 101, floor 3"]), NormalizeOptions(punctuation=False, digits=True))
    assert kept.to_pylist() == ["room 0, floor 0"]
    h = text.text_hashes(text.normalize(pa.array(["Hello, World", "hello world!", "hello there"]), NormalizeOptions()))
    assert h[0] == h[1] != h[2]


def test_unspaced_scripts_get_character_shingles_and_short_texts_one_shingle(demo_jsonl):
    rows = []
    for line in demo_jsonl.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the sample holds a few broken lines on purpose
            continue
    zho = next(r["text"] for r in rows if r["id"] == "zho-01")
    tha = next(r["text"] for r in rows if r["id"].startswith("tha-"))
    eng = next(r["text"] for r in rows if r["id"] == "eng-01")
    normalized = text.normalize(pa.array([zho, tha, eng, "two words", ""]), NormalizeOptions())
    assert text.unspaced(normalized).tolist() == [True, True, False, False, False]
    _, counts = text.shingles(normalized, 5, 5)
    chars = len(normalized[0].as_py().replace(" ", ""))
    assert counts.tolist()[0] == chars - 4  # character 5-grams
    assert counts.tolist()[2] == len(eng.split()) - 4 and counts.tolist()[3:] == [1, 0]


def test_signature_similarity_estimates_jaccard():
    rng = random.Random(3)
    base = _words(200, rng)
    pairs = []
    for edits in (0, 5, 15, 40, 100):
        other = list(base)
        for i in rng.sample(range(200), edits):
            other[i] = rng.choice(VOCAB)
        pairs.append((" ".join(base), " ".join(other)))
    flat = pa.array([t for p in pairs for t in p])
    hashes, counts = text.shingles(flat, 5, 5)
    sig = minhash.signatures(hashes, counts, 256, 1)
    est = minhash.similarity(sig[0::2], sig[1::2])
    exact = np.array([_jaccard(a, b) for a, b in pairs])
    assert exact[0] == 1.0 and est[0] == 1.0
    sd = np.sqrt(exact * (1 - exact) / 256)
    assert np.all(np.abs(est - exact) <= 4 * sd + 1e-9), (est, exact)


def test_band_choice_puts_the_threshold_on_the_steep_part():
    bands, rows = minhash.choose_bands(0.8, 128)
    assert bands * rows <= 128
    curve = minhash.s_curve(bands, rows)
    assert curve["0.80"] >= 0.98 and curve["0.50"] < 0.2
    assert list(curve.values()) == sorted(curve.values())


# --- grouping steps -----------------------------------------------------------------------
def test_exact_decisions_keep_the_smallest_id_whatever_the_order():
    keys = pa.table({"hash": np.array([5, 9, 5, 5, 7], np.uint64), "id": ["c", "x", "a", "b", "y"],
                     "source": ["s"] * 5, "line": [1, 2, 3, 4, 5], "batch": np.array([1, 1, 2, 2, 3], np.uint64),
                     "row": np.array([0, 1, 0, 1, 0], np.int32)}, schema=groups.EXACT_KEYS)
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0]):
        d = groups.exact_decisions(keys.take(pa.array(order))).to_pylist()
        assert sorted((r["kept_id"], r["copies"], r["duplicate"], r["batch"], r["row"]) for r in d) == [
            ("a", 3, False, 2, 0), ("a", 3, True, 1, 0), ("a", 3, True, 2, 1)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40)), min_size=1, max_size=80))
def test_components_equal_union_find(pairs):
    edges = np.array([p for p in pairs if p[0] != p[1]], np.uint64).reshape(-1, 2)
    if not len(edges):
        return
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x
    for a, b in edges.tolist():
        parent[find(a)] = find(b)
    members: dict[int, list[int]] = {}
    for x in {int(v) for v in edges.ravel()}:
        members.setdefault(find(x), []).append(x)
    t = groups.components(edges).to_pydict()
    assert {int(n): int(c) for n, c in zip(t["node"], t["cluster"])} == {
        x: min(m) for m in members.values() for x in m}
    assert sorted(s for s, r in zip(t["size"], t["root"]) if r) == sorted(len(m) for m in members.values())


def test_one_round_leaves_a_long_chain_split_and_says_so():
    chain = np.array([[i + 1, i] for i in range(1, 40)], np.uint64)
    edges = groups.small_star(groups.larger_first(groups.large_star(groups.both_directions(chain))))
    _, unconverged = groups.labels(edges, edges)
    assert unconverged > 0


# --- the stage on one batch ---------------------------------------------------------------
def test_process_removes_exact_and_near_duplicates_with_reasons():
    rng = random.Random(11)
    a, b = _words(60, rng), _words(60, rng)
    near = list(a)
    near[59] = "zzzz"  # one word at the end: J = 55/57
    texts = [" ".join(a), " ".join(a).upper() + "!", " ".join(near), " ".join(b), "!!!", "???"]
    r = Dedup(DedupOptions(enabled=True, minhash={"enabled": True})).process(_batch(texts))
    assert r.kept.column("id").to_pylist() == ["d000", "d003", "d004", "d005"]  # empty-after-normalising texts stay
    rejected = {row["id"]: (row["reason"], json.loads(row["detail"])) for row in r.rejected.to_pylist()}
    assert rejected["d001"] == ("duplicate", {"kept": "d000", "kept_source": "f.jsonl", "kept_line": 1, "copies": 2})
    assert rejected["d002"][0] == "near_duplicate"
    kept = r.kept.to_pylist()
    assert kept[0]["dup_copies"] == 2 and kept[0]["dup_cluster"] == rejected["d002"][1]["cluster"]
    assert kept[0]["dup_cluster_size"] == 2 and kept[1]["dup_cluster"] is None


def test_options_refuse_nonsense():
    with pytest.raises(ValueError, match="both dedup.exact and dedup.minhash are off"):
        DedupOptions(enabled=True, exact={"enabled": False})
    with pytest.raises(ValueError, match="exceeds num_perm"):
        DedupOptions(minhash={"bands": 20, "rows": 10, "num_perm": 128})
    with pytest.raises(ConfigError, match="dedup.minhash.treshold"):
        load_config(data={"stages": ["dedup"], "dedup": {"minhash": {"treshold": 0.7}}})


# --- the Beam passes ------------------------------------------------------------------------
def _corpus(tmp_path):
    """Three files: exact copies across files, a near-duplicate chain split across two
    files (a ~ b in one, b ~ c with c in the other), Chinese near-duplicates, uniques."""
    rng = random.Random(5)
    base = _words(50, rng)
    b = list(base)
    b[40] = "qqqq"  # 5 of 46 shingles change: J(a, b) = 41/51
    c = list(b)
    c[30] = "rrrr"  # J(b, c) = 41/51, J(a, c) = 36/56: below the threshold, joined only through b
    zho = "今天早上下了很大的雨，街上到处都是积水。我妈妈每个周末都会包饺子给全家人吃。你下班回家的时候能顺便买点面包和牛奶吗？"
    files = {
        "a.jsonl": [("a1", " ".join(base)), ("a2", "The same sentence, in two files."), ("a3", zho)],
        "b.jsonl": [("b1", " ".join(b)), ("b2", "the same sentence in two files"), ("b3", zho.replace("积水", "水坑"))],
        "c.jsonl": [("c1", " ".join(c)), ("c2", zho.replace("牛奶", "鸡蛋"))]
                   + [(f"u{i}", " ".join(_words(30, rng))) for i in range(40)],
    }
    for name, rows in files.items():
        write_jsonl(tmp_path / name, [{"id": i, "text": t} for i, t in rows])
    assert _jaccard(" ".join(base), " ".join(c)) < 0.7 < min(_jaccard(" ".join(base), " ".join(b)),
                                                             _jaccard(" ".join(b), " ".join(c)))
    return str(tmp_path / "*.jsonl")


def _run(tmp_path, glob, name, beam_args=(), batch_size=4):
    config = load_config(data={"stages": ["dedup"], "input": {"paths": [glob], "batch_size": batch_size},
                               "dedup": {"minhash": {"enabled": True, "threshold": 0.7}, "shards": 3},
                               "output": {"path": str(tmp_path / name)}})
    report = run_corpus(config, list(beam_args))
    rejected = datasets.load_from_disk(str(tmp_path / name / "_rejected"))
    kept = datasets.concatenate_datasets(list(datasets.load_from_disk(str(tmp_path / name)).values()))
    return report, sorted(kept["id"]), {r["id"]: (r["reason"], json.loads(r["detail"])) for r in rejected}


def test_duplicates_across_files_and_batches(tmp_path):
    report, kept, rejected = _run(tmp_path, _corpus(tmp_path), "out")
    assert report["accounting"]["balanced"] and report["accounting"]["in"] == 48
    assert rejected["b2"] == ("duplicate", {"kept": "a2", "kept_source": str(tmp_path / "a.jsonl"),
                                            "kept_line": 2, "copies": 2})
    # the chain a1 ~ b1 ~ c1 is one cluster although a1 and c1 are in different files
    chain = {"a1", "b1", "c1"}
    assert len(chain & set(kept)) == 1
    clusters = {rejected[i][1]["cluster"] for i in chain - set(kept)}
    assert {r for r, _ in (rejected[i] for i in chain - set(kept))} == {"near_duplicate"} and len(clusters) == 1
    # Chinese near-duplicates found through character shingles
    assert len({"a3", "b3", "c2"} & set(kept)) == 1
    assert all(f"u{i}" in kept for i in range(40))
    stage = next(s for s in report["stages"] if s["stage"] == "dedup")
    assert stage["rejected"] == {"duplicate": 1, "near_duplicate": 4}
    assert report["dedup"]["near"]["clusters"] == 2 and report["dedup"]["near"]["cluster_sizes"] == {"3-4": 2}
    assert report["dedup"]["exact"]["duplicates"] == 1 and report["models"]["dedup"]["minhash"]["bands"] >= 1


def test_same_result_as_one_batch_and_on_every_local_runner(tmp_path):
    glob = _corpus(tmp_path)
    _, kept, rejected = _run(tmp_path, glob, "in_memory")
    _, kept_mp, rejected_mp = _run(tmp_path, glob, "multi", ["--direct_running_mode=multi_processing",
                                                              "--direct_num_workers=2"])
    assert (kept_mp, rejected_mp) == (kept, rejected)
    # byte for byte: batches leave dedup's joins in no fixed order, the sink does not depend on it
    assert data_file_hashes(tmp_path / "multi") == data_file_hashes(tmp_path / "in_memory")
    _, kept_7, rejected_7 = _run(tmp_path, glob, "batch7", batch_size=7)
    assert (kept_7, rejected_7) == (kept, rejected)
    rows = []
    for name in ("a.jsonl", "b.jsonl", "c.jsonl"):
        for n, line in enumerate((tmp_path / name).read_text(encoding="utf-8").splitlines()):
            r = json.loads(line)
            rows.append({"id": r["id"], "text": r["text"], "source": str(tmp_path / name), "line": n + 1,
                         "offset": 0, "meta": None})
    one = Dedup(DedupOptions(enabled=True, minhash={"enabled": True, "threshold": 0.7})).process(
        pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA))
    assert sorted(one.kept.column("id").to_pylist()) == kept
    assert {r["id"]: (r["reason"], json.loads(r["detail"])) for r in one.rejected.to_pylist()} == rejected
