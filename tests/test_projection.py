"""Label projection: pure helpers, the three methods, exactness of the pruned
constrained search, translate-test, and the DirectRunner job writing a dataset."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from xlcorpus.transforms.backends import mt as mb
from xlcorpus.transforms.stages.project.constrained import constrained_search, guess_from_attention, run_searches
from xlcorpus.transforms.stages.project.marker import match_entities
from xlcorpus.transforms.stages.project.markers import (
    boundaries,
    detokenize,
    iob2_names,
    mark,
    parse_markers,
    to_original,
    tokens_and_tags,
    word_ids,
)
from xlcorpus.transforms.stages.project.options import ProjectionOptions
from xlcorpus.transforms.stages.project.projector import Projector

from tests.test_mt_backend import tiny_model, tiny_sentences

SHIPPED = Path(__file__).resolve().parents[1] / "transforms" / "models" / "synth-en-xx"


# --- pure helpers --------------------------------------------------------------------
def test_mark_and_parse_markers_roundtrip():
    text = "Maria saw North Kavia."
    spans = [{"start": 0, "end": 5, "label": "PER"}, {"start": 10, "end": 21, "label": "LOC"}]
    marked = mark(text, spans)
    assert marked == "[ Maria ] saw [ North Kavia ] ."
    clean, found = parse_markers("[ Maria ]ka [ Kavia Nordu ]sa velota .")
    assert clean == "Mariaka Kavia Nordusa velota ."
    assert [clean[a:b] for a, b in found] == ["Maria", "Kavia Nordu"]
    assert parse_markers("[ a [ b ] ]") == "malformed_markers"
    assert parse_markers("a ] b") == "malformed_markers"
    assert parse_markers("[ a") == "malformed_markers"
    assert parse_markers("[ ] a") == "empty_marker"


def test_detokenize_boundaries_and_tags():
    pieces = ["▁Maria", "ka", "▁Kavia", "▁Nord", "u", "sa", "▁velota"]
    text, offsets = detokenize(pieces)
    assert text == "Mariaka Kavia Nordusa velota"
    assert [text[a:b] for a, b in offsets] == ["Maria", "ka", "Kavia", "Nord", "u", "sa", "velota"]
    assert boundaries(pieces) == [0, 2, 3, 6, 7]
    assert boundaries(pieces, "piece") == list(range(8))
    assert word_ids(pieces) == [0, 0, 1, 2, 2, 2, 3]
    names = iob2_names(["LOC", "PER"])
    assert names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    toks, tags = tokens_and_tags(text, [{"start": 0, "end": 5, "label": "PER"},
                                           {"start": 8, "end": 19, "label": "LOC"}], names)
    assert toks == ["Maria", "ka", "Kavia", "Nordu", "sa", "velota"]  # split at span edges inside words
    assert [names[t] for t in tags] == ["B-PER", "O", "B-LOC", "I-LOC", "O", "O"]
    with pytest.raises(KeyError):
        tokens_and_tags(text, [{"start": 0, "end": 5, "label": "ORG"}], names)
    assert to_original("a  b", "a b", [(0, 1), (2, 3)]) == [(0, 1), (3, 4)]
    assert to_original("a c", "a b", [(0, 1)]) is None


def test_match_entities_exact_then_fuzzy():
    from rapidfuzz import fuzz

    names = ["Wichard", "Maria", "Bank of Tarvia"]
    pieces = ["Maria", "Tarvia Banko", "Vitsard"]
    assert [e for e, _ in match_entities(names, pieces, fuzz.ratio)] == [1, 2, 0]
    assert match_entities(names, pieces, fuzz.ratio)[0][1] == 100.0


def test_options_validation():
    with pytest.raises(ValueError, match="method"):
        ProjectionOptions(method="magic")
    with pytest.raises(ValueError, match="mode"):
        ProjectionOptions(mode="translate-dev")
    with pytest.raises(ValueError, match="bounds"):
        ProjectionOptions(bounds="guess")
    with pytest.raises(ValueError, match="batch_tokens"):
        ProjectionOptions(batch_tokens=0)


def test_tolerances_follow_the_compute_type():
    from xlcorpus.transforms.stages.project.constrained import tolerances

    assert tolerances("float32", 1e-3) == (1e-4, 1e-3)
    assert tolerances("int8_float32", 1e-3) == (1e-4, 1e-3)
    noise, margin = tolerances("int8_float16", 1e-3)
    assert noise > 1e-3 and margin >= 5e-2
    assert tolerances("bfloat16", 0.2)[1] == 0.2


# --- a deterministic stand-in model: translation is the identity ------------------------------
class IdentityBackend:
    """Copies the source (minus markers it is told to drop) and attends diagonally:
    enough to check the methods' bookkeeping exactly."""

    src_token = None

    def __init__(self, drop_close: bool = False):
        self.drop_close = drop_close
        self.counters = mb._Counters()

    def target_pieces(self, text):
        return ["▁" + w for w in text.split()]

    source_pieces = target_pieces

    def source_tokens(self, text):
        return self.source_pieces(text) + ["</s>"]

    def decode(self, pieces):
        return detokenize(pieces)[0]

    def translate(self, sources, attention=False, beam_size=None, prefixes=None):
        out = []
        for k, src in enumerate(sources):
            toks = prefixes[k] if prefixes is not None else [t for t in src[:-1]
                                                              if not (self.drop_close and t == "▁]")]
            att = np.eye(len(toks), len(src), dtype=np.float32) if attention else None
            out.append(mb.Translation(list(toks), -0.5, att))
        return out


def _spans(text, *words_and_labels):
    out = []
    for word, label in words_and_labels:
        m = re.search(re.escape(word), text)
        out.append({"start": m.start(), "end": m.end(), "label": label})
    return out


@pytest.mark.parametrize("method", ["marker", "alignment"])
def test_identity_translation_projects_spans_unchanged(method):
    text = "Maria Berg saw the Bank of Tarvia"
    spans = _spans(text, ("Maria Berg", "PER"), ("Bank of Tarvia", "ORG"))
    p = Projector(ProjectionOptions(method=method, labels=("ORG", "PER")), IdentityBackend())
    [r] = p.project([text], [spans])
    assert r.reason is None and r.text == text
    assert r.spans == spans


def test_marker_count_mismatch_and_alignment_conflict():
    text = "Maria saw Tarvia"
    spans = _spans(text, ("Maria", "PER"), ("Tarvia", "LOC"))
    p = Projector(ProjectionOptions(method="marker"), IdentityBackend(drop_close=True))
    [r] = p.project([text], [spans])
    assert r.reason == "malformed_markers"

    class OneClose(IdentityBackend):
        def translate(self, sources, **kw):
            return [mb.Translation(["▁[", "▁Maria", "▁]", "▁saw", "▁Tarvia"], -1.0)]

    [r] = Projector(ProjectionOptions(method="marker"), OneClose()).project([text], [spans])
    assert r.reason == "count_mismatch" and r.detail["markers"] == 1

    class Collapsed(IdentityBackend):  # every target piece attends to the first source word
        def translate(self, sources, attention=False, **kw):
            src = sources[0]
            att = np.zeros((2, len(src)), np.float32)
            att[:, 0] = 1
            return [mb.Translation(["▁Mariaka", "▁velota"], -1.0, att)]

    # nothing aligns to Tarvia -> no_span
    [r] = Projector(ProjectionOptions(method="alignment"), Collapsed()).project([text], [spans])
    assert r.reason == "no_span"

    class Interleaved(IdentityBackend):  # target words align to Maria, Tarvia, Maria: hulls overlap
        def translate(self, sources, attention=False, **kw):
            att = np.zeros((3, len(sources[0])), np.float32)
            att[[0, 1, 2], [0, 2, 0]] = 1
            return [mb.Translation(["▁a", "▁b", "▁c"], -1.0, att)]

    [r] = Projector(ProjectionOptions(method="alignment"), Interleaved()).project([text], [spans])
    assert r.reason == "conflict" and len(r.detail["spans"]) == 2


def test_translate_test_projects_predictions_back():
    original = "Mariaka Tarviasa velota"

    def predictor(texts):  # a gazetteer tagger on the (identity) translation
        return [_spans(t, ("Mariaka", "PER"), ("Tarviasa", "LOC")) for t in texts]

    opts = ProjectionOptions(method="alignment", mode="translate-test", labels=("LOC", "PER"))
    [r] = Projector(opts, IdentityBackend(), IdentityBackend(), predictor).project([original], [[]])
    assert r.reason is None and r.text == original
    assert [(original[s["start"]:s["end"]], s["label"]) for s in r.spans] == [("Mariaka", "PER"),
                                                                            ("Tarviasa", "LOC")]
    assert r.src_text == original and len(r.src_spans) == 2
    opts = ProjectionOptions(method="marker", mode="translate-test", labels=("LOC", "PER"))
    [r] = Projector(opts, IdentityBackend(), IdentityBackend(), predictor).project([original], [[]])
    assert r.reason is None and [original[s["start"]:s["end"]] for s in r.spans] == ["Mariaka", "Tarviasa"]
    with pytest.raises(ValueError, match="reverse"):
        Projector(opts, IdentityBackend())


def test_guess_from_attention_takes_the_heaviest_run_without_the_first_piece():
    tokens = ["▁a", "b", "▁C", "d", "▁e", "▁F"]  # words: a b | C d | e | F
    # the first piece's alignment is dropped; words C d (2 pieces) outweigh F (1)
    assert guess_from_attention({0, 2, 3, 5}, tokens) == (2, 3)
    assert guess_from_attention({0}, tokens) == (0, 1)  # the only aligned piece counts
    assert guess_from_attention({2, 4, 5}, tokens) == (2, 5)  # words C d, e, F in a row: one run
    assert guess_from_attention({1, 5}, tokens) == (0, 1)  # equal runs: the first
    assert guess_from_attention({1, 2, 5}, tokens, "piece") == (1, 2)
    assert guess_from_attention(set(), tokens) is None


# --- constrained search on a real (tiny, random) CTranslate2 model --------------------------
@pytest.fixture(scope="module")
def random_backend(tmp_path_factory):
    model = tiny_model(tmp_path_factory.mktemp("proj"), "nllb", seed=3, output_scale=2.0)
    return mb.MTBackend(mb.MTOptions(model, "nllb", "eng_Latn", "xxx_Latn", max_decoding_length=14, beam_size=2))


def _random_data(n, seed=0):
    rng = random.Random(seed)
    texts, spans = [], []
    for text in tiny_sentences(n, seed):
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        k = rng.randrange(len(words))
        ents = [{"start": words[k][0], "end": words[min(k + rng.randint(0, 1), len(words) - 1)][1], "label": "PER"}]
        if len(words) > k + 3:
            ents.append({"start": words[k + 3][0], "end": words[k + 3][1], "label": "LOC"})
        texts.append(text)
        spans.append(ents)
    return texts, spans


def _search_ids(fw, opens, closes, template):
    return {"open": fw.token_id(opens[0]), "close": fw.token_id(closes[0]),
            "template": [fw.token_id(t) for t in template]}


@pytest.mark.parametrize("kind", ["word", "piece"])
@pytest.mark.parametrize("bounds", ["logits", "scores"])
@pytest.mark.parametrize("guessing", ["attention", "none", "random"])
def test_pruned_search_equals_exhaustive(random_backend, kind, bounds, guessing):
    """Branch-and-bound returns exactly the exhaustive argmax placement, entity by
    entity, whatever the first guess (the attention hull, none, a random span) and
    whichever bounds (exact next-token log-probs, or score_batch complements)."""
    from xlcorpus.transforms.stages.project.alignment import aligned_hulls

    fw = random_backend
    texts, spans = _random_data(40 if kind == "word" else 15)
    templates = fw.translate([fw.source_tokens(t) for t in texts], attention=True)
    opens, closes = fw.target_pieces("["), fw.target_pieces("]")
    rng = random.Random(1)
    searches = {False: [], True: []}
    for text, ents, tpl in zip(texts, spans, templates):
        hulls = aligned_hulls(fw, text, ents, tpl, kind)
        ids = _search_ids(fw, opens, closes, tpl.tokens) if bounds == "logits" else None
        for ent, hull in zip(ents, hulls):
            n = len(tpl.tokens)
            a = rng.randrange(n)
            guess = {"attention": hull[:2] if hull else None, "none": None,
                     "random": (a, rng.randrange(a, n))}[guessing]
            src = fw.source_tokens(mark(text, [ent]))
            for ex in (False, True):
                searches[ex].append(constrained_search(src, tpl.tokens, opens, closes, kind, ex, 2, 1e-4,
                                                       guess, ids))
    pruned = run_searches(fw, searches[False])
    full = run_searches(fw, searches[True])
    assert len(pruned) > 20
    for a, b in zip(pruned, full):
        assert a.placement == b.placement
        assert a.score == pytest.approx(b.score, abs=1e-3)
        assert a.scored <= b.scored  # each placement scored at most once
    # (a random model's flat distributions leave little to prune: how much the bounds save
    # is checked on the trained reference model below)


def test_constrained_projector_rows(random_backend):
    texts, spans = _random_data(12, seed=5)
    names = tuple(iob2_names(["LOC", "PER"]))
    ex = Projector(ProjectionOptions(labels=("LOC", "PER"), exhaustive=True), random_backend).project(texts, spans)
    pr = Projector(ProjectionOptions(labels=("LOC", "PER")), random_backend).project(texts, spans)
    for a, b in zip(ex, pr):
        assert (a.reason, a.spans, a.text) == (b.reason, b.spans, b.text)
        if a.reason is None:
            assert len(a.spans) == len(b.span_scores)
            _tokens, tags = tokens_and_tags(a.text, a.spans, names)
            assert sum(1 for t in tags if names[t].startswith("B-")) == len(a.spans)
        else:
            assert a.reason in ("conflict", "no_span")
    assert sum(r.scored for r in pr) <= sum(r.scored for r in ex)


def test_constrained_translate_test_equals_exhaustive(random_backend):
    """translate-test: predictions on the translation projected back onto the given
    texts (fixed templates, attention from a forced pass) -- same answers pruned or not."""
    texts, _spans = _random_data(10, seed=9)

    def predictor(src_texts):  # tags the first word of each translation
        return [[{"start": 0, "end": len(t.split()[0]), "label": "PER"}] if t.split() else [] for t in src_texts]

    def run(exhaustive):
        opts = ProjectionOptions(method="constrained", mode="translate-test", labels=("PER",), exhaustive=exhaustive)
        return Projector(opts, random_backend, random_backend.reversed(), predictor).project(texts, [[]] * len(texts))

    pruned, full = run(False), run(True)
    assert [(r.reason, r.spans, r.text) for r in pruned] == [(r.reason, r.spans, r.text) for r in full]
    assert any(r.reason is None for r in pruned)
    assert all(r.text == t for r, t in zip(pruned, texts) if r.reason is None)
    assert sum(r.scored for r in pruned) <= sum(r.scored for r in full)


@pytest.mark.parametrize("bounds", ["logits", "scores"])
def test_pruned_search_on_reference_model_is_exact_and_cheap(bounds):
    """On the trained reference model the bounds are tight: same answers as exhaustive
    with at most a fifth of its scored placements."""
    from bench import synthetic_pair as sp

    pairs = sp.generate(25, seed=11, split="test")
    # the reference model: Marian-like layout, trained without </s> on the source
    fw = mb.MTBackend(mb.MTOptions(str(SHIPPED), "marian", beam_size=2, source_eos=False))
    texts = [p.src_text for p in pairs]
    spans = [[{"start": s, "end": e, "label": lab} for s, e, lab in p.src_spans] for p in pairs]
    labels = tuple(sp.LABELS)
    ex = Projector(ProjectionOptions(labels=labels, exhaustive=True), fw).project(texts, spans)
    fw.counters.calls = fw.counters.sequences = 0
    pr = Projector(ProjectionOptions(labels=labels, bounds=bounds), fw).project(texts, spans)
    assert [(r.reason, r.spans) for r in ex] == [(r.reason, r.spans) for r in pr]
    assert sum(r.scored for r in pr) * 5 <= sum(r.scored for r in ex)
    n_ents = sum(len(s) for s in spans)
    assert fw.counters.sequences == sum(r.sequences for r in pr)  # the rows' counts are the model's work
    if bounds == "logits":
        # the attention guess is nearly always the answer and the exact bounds prove it: about one
        # scored placement per entity, and a next-token pass only where the complement cannot prune
        assert sum(r.scored for r in pr) <= 1.3 * n_ents
        assert fw.counters.by_kind["next_token"] <= n_ents


# --- the job on the DirectRunner ----------------------------------------------------------------
def test_projection_job_writes_classlabel_dataset(tmp_path, random_backend):
    import datasets
    from xlcorpus.pipelines.projection import ProjectionJob, run_projection
    from xlcorpus.transforms.stages.read.ner import NerReaderOptions

    texts, spans = _random_data(10, seed=7)
    lines = [json.dumps({"id": f"r{k}", "text": t, "spans": s}) for k, (t, s) in enumerate(zip(texts, spans))]
    lines.append(json.dumps({"id": "bad", "text": "short", "spans": [{"start": 0, "end": 99, "label": "PER"}]}))
    lines.append(json.dumps({"id": "odd", "text": "Maria went", "spans": [{"start": 0, "end": 5, "label": "ORG"}]}))
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    job = ProjectionJob(inputs=[str(inp)], output=str(out),
                        projection=ProjectionOptions(method="alignment", labels=("LOC", "PER"),
                                                     mt=random_backend.opts),
                        reader=NerReaderOptions())
    report = run_projection(job)
    ds = datasets.load_from_disk(str(out))
    assert ds.features["ner_tags"].feature.names == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    acct = report["accounting"]
    assert acct["balanced"] and acct["in"] == 12 and acct["dead_letter"] == 1
    assert acct["kept"] == len(ds) and acct["kept"] + acct["rejected"] == 11
    ret = report["retention"]["alignment"]
    assert ret["in"] == 11 and ret["rejected_by_reason"]["unknown_label"]["rows"] == 1
    assert ret["rate"] == pytest.approx(len(ds) / 11, abs=1e-3)
    rejected = datasets.load_from_disk(str(out / "_rejected"))
    assert "odd" in rejected["id"] and set(rejected["stage"]) == {"project"}
    for row in ds:
        assert len(row["tokens"]) == len(row["ner_tags"]) and row["method"] == "alignment"
        for s in row["spans"]:
            assert 0 <= s["start"] < s["end"] <= len(row["text"])
    # the CLI runs the same job
    from xlcorpus.pipelines.cli import main

    o = random_backend.opts
    rc = main(["project", "--input", str(inp), "--model", o.model, "--src-lang", "eng_Latn", "--tgt-lang",
               "xxx_Latn", "--method", "marker", "--labels", "LOC,PER", "--output", str(tmp_path / "cli"),
               "--beam-size", "1", "--device", "cpu", "--compute-type", "int8"])
    assert rc == 0
    rep = json.loads((tmp_path / "cli" / "report.json").read_text())
    assert rep["accounting"]["balanced"] and "marker" in rep["retention"]
    assert (rep["models"]["mt"]["device"], rep["models"]["mt"]["compute_type"]) == ("cpu", "int8")


def test_gpu_benchmark_script():
    """bench/projection_gpu.sh: without CUDA it stops with a clear message; with CUDA it
    prints the benchmark's RESULT line."""
    import subprocess
    import sys

    import ctranslate2

    root = Path(__file__).resolve().parents[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "N": "20", "HOME": str(root)}
    done = subprocess.run(["bash", str(root / "bench" / "projection_gpu.sh"), "--methods", "constrained",
                           "--repeats", "1"], capture_output=True, text=True, env=env, timeout=600)
    if ctranslate2.get_cuda_device_count() == 0:
        assert done.returncode != 0 and "no CUDA device" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        last = done.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"RESULT constrained_f1=\S+ marker_f1=nan alignment_f1=nan speed_ratio=\S+ "
                            r"agreement=100\.0", last), last
