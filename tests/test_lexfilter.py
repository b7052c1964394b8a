"""Lexical-distance filter: exact nearest-word search, sentence scores, selection, Beam passes."""

from __future__ import annotations

import functools
import json
import math
import pickle
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
import regex
from apache_beam.testing.util import assert_that
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

import xlcorpus.transforms.stages.lexfilter as lexfilter
from xlcorpus.schemas import DEAD_LETTER_SCHEMA, DOCUMENT_SCHEMA, LEXFILTER_FIELDS, REJECTED_SCHEMA
from xlcorpus.transforms.core.accounting import DEAD_LETTER, KEPT, REJECTED
from xlcorpus.transforms.stages.lexfilter import (
    Lexicon, LexFilterConfigError, LexFilterOptions, LexicalFilter, LexiconOptions, NearestWordIndex, SentenceScorer,
    build_lexicon, filter_batch, format_distance_report, language_distances, normalize_text, read_lexicon,
    score_batch, tokenize, tokenize_batch, word_ngrams, write_lexicon,
)


# --- references written independently of the module -------------------------------------
def levenshtein(a: str, b: str) -> int:
    """Textbook dynamic programme (unit costs)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def nearest_brute(word: str, lexicon: list[str]) -> float:
    return min(levenshtein(word, w) / max(len(word), len(w), 1) for w in lexicon)


REF_WORD = regex.compile(r"\p{L}[\p{L}\p{M}]*(?:['\-][\p{L}\p{M}]+)*")


def sentence_brute(text: str | None, lexicon: list[str], weighting: str = "none") -> float:
    tokens = REF_WORD.findall((text or "").lower())
    if not tokens:
        return math.nan
    weights = [len(t) if weighting == "length" else 1 for t in tokens]
    return sum(w * nearest_brute(t, lexicon) for w, t in zip(weights, tokens)) / sum(weights)


def docs(texts, langs=None, start: int = 0) -> pa.RecordBatch:
    n = len(texts)
    batch = pa.RecordBatch.from_arrays(
        [pa.array([f"d{start + i}" for i in range(n)]), pa.array(texts, pa.string()), pa.array(["mem"] * n),
         pa.array(range(start + 1, start + n + 1), pa.int64()), pa.array([0] * n, pa.int64()),
         pa.array([None] * n, pa.string())], schema=DOCUMENT_SCHEMA)
    if langs is not None:
        batch = batch.append_column("lang", pa.array(langs, pa.string()))
    return batch


def random_word(rng: random.Random, alphabet: str, lo: int, hi: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


# --- nearest-word search -------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_case():
    rng = random.Random(7)
    lexicon = sorted({random_word(rng, "abcdeé", 1, 9) for _ in range(220)}
                     | {random_word(rng, "ab", 33, 40) for _ in range(3)})  # long words skip the deletion index
    queries = ([random_word(rng, "abcdefé", 0, 11) for _ in range(120)]
               + [rng.choice(lexicon) for _ in range(10)]  # exact hits
               + [w[:-1] + "x" for w in rng.sample(lexicon, 10)]  # one edit away
               + ["", "a", "z", "ab" * 18, "b" * 45, "abcde" * 7]  # empty, single letters, long words
               + ["abc", "abc"])  # duplicates
    return lexicon, queries, np.array([nearest_brute(q, lexicon) for q in queries])


@pytest.mark.parametrize("max_deletes", [0, 1, 2, 3])
def test_nearest_distance_equals_brute_force(random_case, max_deletes):
    lexicon, queries, expected = random_case
    got = NearestWordIndex(lexicon, max_deletes=max_deletes).nearest_distance(queries)
    assert got.dtype == np.float32 and got.shape == (len(queries),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text("abcə", min_size=1, max_size=7), min_size=1, max_size=25),
       st.lists(st.text("abcdə", max_size=9), max_size=15), st.integers(0, 3))
def test_nearest_distance_property(lexicon, queries, max_deletes):
    index = NearestWordIndex(lexicon, max_deletes=max_deletes)
    expected = [nearest_brute(q, sorted(set(lexicon))) for q in queries]
    np.testing.assert_allclose(index.nearest_distance(queries), expected, rtol=0, atol=1e-6)


def test_nearest_distance_at_scale_matches_cdist_and_memo():
    rng = random.Random(3)
    syllables = [c + v for c in "bdgkmnpst" for v in "aeiou"]
    lexicon = list({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 6))) for _ in range(3000)})
    queries = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 6))) for _ in range(400)]
    queries += [w.replace("a", "o", 1) for w in lexicon[:200]]
    expected = process.cdist(queries, lexicon, scorer=Levenshtein.normalized_distance, dtype=np.float32).min(axis=1)
    index = NearestWordIndex(lexicon, memo_size=300)
    for _ in range(2):  # second round: partly served by the memo, which is cleared when full
        np.testing.assert_array_equal(index.nearest_distance(queries), expected)
    assert lexfilter.brute_force_nearest(queries[:50], lexicon).tolist() == expected[:50].tolist()
    clone = pickle.loads(pickle.dumps(NearestWordIndex(lexicon, max_deletes=2)))  # str hashes are per process
    np.testing.assert_array_equal(clone.nearest_distance(queries), expected)


def test_pair_distances_one_call_per_busy_query_and_one_for_the_rest():
    from xlcorpus.transforms.stages.lexfilter import index as index_module
    rng = random.Random(11)
    queries = ["kitabu", "ab", "mtoto"]
    words = [random_word(rng, "abiktmou", 1, 9) for _ in range(index_module._GROUPED_CANDIDATES + 5)]
    pair_q = np.array([0] * len(words) + [1, 1, 2], np.int64)  # query 0 has its own cdist call, 1 and 2 share cpdist
    words += ["a", "abc", "mtotoni"]
    got = index_module._pair_distances(queries, pair_q, words, cutoff=3)
    assert got.tolist() == [min(levenshtein(queries[q], w), 4) for q, w in zip(pair_q.tolist(), words)]


def test_more_queries_than_a_lookup_key_numbers_are_searched_in_slices(monkeypatch):
    from xlcorpus.transforms.stages.lexfilter import index as index_module
    lexicon = ["kitabu", "vitabu", "mtoto", "watoto", "nyumba"]
    queries = ["kitab", "mtotoo", "nyumbani", "watu", "vitabu", "x", "kitabuni"]
    index = NearestWordIndex(lexicon)
    monkeypatch.setattr(index_module, "_MAX_IDS", 3)  # 7 queries: slices of 3, 3 and 1
    np.testing.assert_allclose(index.nearest_distance(queries), [nearest_brute(q, lexicon) for q in queries],
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="at most 3 words"):
        NearestWordIndex(lexicon)
    assert NearestWordIndex(lexicon, max_deletes=0).nearest_distance(["mtot"]).tolist() == [np.float32(0.2)]


def test_index_is_built_in_chunks_of_variants_with_the_same_entries(monkeypatch):
    """Long words have thousands of variants at depth 3: the build goes by variant count,
    and the chunking does not change the index."""
    from xlcorpus.transforms.stages.lexfilter import index as index_module
    rng = random.Random(3)
    lexicon = ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 32))) for _ in range(300)]
    whole = NearestWordIndex(lexicon)._del_entries
    calls = []
    real = index_module._variant_hashes
    monkeypatch.setattr(index_module, "_variant_hashes", lambda *a: calls.append(len(a[0])) or real(*a))
    monkeypatch.setattr(index_module, "_VARIANTS_PER_CHUNK", 6000)  # about one 32-letter word (5,489)
    chunked = NearestWordIndex(lexicon)._del_entries
    assert len(calls) > 10 and sum(calls) == len(set(lexicon))  # each distinct word once
    np.testing.assert_array_equal(chunked, whole)


def capped_brute(word: str, lexicon: list[str], max_distance=None, max_edits=None) -> float:
    """Nearest normalised distance among words within the caps, else 1.0 (independent reference)."""
    within = [levenshtein(word, w) / max(len(word), len(w), 1) for w in lexicon
              if max_edits is None or levenshtein(word, w) <= max_edits]
    within = [d for d in within if max_distance is None or d <= max_distance]
    return min(within, default=1.0)


@pytest.mark.parametrize("max_distance, max_edits", [(0.5, None), (1 / 3, None), (0.0, None), (None, 1),
                                                     (None, 2), (None, 0), (0.25, 2), (0.5, 3)])
def test_capped_search_equals_brute_force_with_the_same_cap(random_case, max_distance, max_edits):
    lexicon, queries, _ = random_case
    expected = np.array([capped_brute(q, lexicon, max_distance, max_edits) for q in queries], np.float32)
    index = NearestWordIndex(lexicon, max_distance=max_distance, max_edits=max_edits, memo_size=64)
    for _ in range(2):  # second round partly from the memo
        np.testing.assert_array_equal(index.nearest_distance(queries), expected)
    np.testing.assert_array_equal(lexfilter.brute_force_nearest(queries, lexicon, max_distance, max_edits), expected)
    clone = pickle.loads(pickle.dumps(index))
    assert (clone.max_distance, clone.max_edits) == (index.max_distance, index.max_edits)
    np.testing.assert_array_equal(clone.nearest_distance(queries), expected)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text("abcə", min_size=1, max_size=8), min_size=1, max_size=25),
       st.lists(st.text("abcdə", max_size=10), max_size=15),
       st.sampled_from([None, 0.2, 0.34, 0.5, 0.75]), st.sampled_from([None, 0, 1, 2, 3]), st.integers(0, 2))
def test_capped_search_property(lexicon, queries, max_distance, max_edits, max_deletes):
    index = NearestWordIndex(lexicon, max_deletes=max_deletes, max_distance=max_distance, max_edits=max_edits)
    expected = [capped_brute(q, sorted(set(lexicon)), max_distance, max_edits) for q in queries]
    np.testing.assert_array_equal(index.nearest_distance(queries), np.array(expected, np.float32))


def test_caps_at_scale_match_cdist_with_score_cutoff():
    rng = random.Random(4)
    syllables = [c + v for c in "bdgkmnpstʃ" for v in "aeiouə"]
    lexicon = list({"".join(rng.choice(syllables) for _ in range(rng.randint(1, 6))) for _ in range(3000)})
    queries = ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 7))) for _ in range(300)]
    queries += [w.replace("a", "o", 1) for w in lexicon[:100]] + ["x" * 40, "ba" * 17]
    cutoff = process.cdist(queries, lexicon, scorer=Levenshtein.normalized_distance, score_cutoff=0.4,
                           dtype=np.float32).min(axis=1)
    np.testing.assert_array_equal(NearestWordIndex(lexicon, max_distance=0.4).nearest_distance(queries), cutoff)
    raw = process.cdist(queries, lexicon, scorer=Levenshtein.distance, dtype=np.int32)
    longer = np.maximum.outer([len(q) for q in queries], [len(w) for w in lexicon])
    within_one = np.where(raw <= 1, raw / longer, 1.0).min(axis=1).astype(np.float32)
    np.testing.assert_array_equal(NearestWordIndex(lexicon, max_edits=1).nearest_distance(queries), within_one)


def test_memo_is_bounded_keeps_frequent_words_and_never_changes_results():
    rng = random.Random(9)
    lexicon = sorted({random_word(rng, "abcde", 2, 8) for _ in range(400)})
    index = NearestWordIndex(lexicon, memo_size=40)
    reference = NearestWordIndex(lexicon)
    frequent = [random_word(rng, "abcdef", 2, 9) for _ in range(5)]
    calls = []
    real_search = index._search

    def counting(words, array=None):
        calls.append(list(words))
        return real_search(words, array)

    index._search = counting
    for step in range(30):  # each batch: the frequent words plus a tail of new ones
        batch = frequent + [random_word(rng, "abcdef", 2, 9) for _ in range(15)]
        np.testing.assert_array_equal(index.nearest_distance(batch), reference.nearest_distance(batch))
        assert len(index._memo) + len(index._memo_old) <= 40
    searched = [w for call in calls[1:] for w in call]
    assert not set(frequent) & set(searched)  # found again in one of the two generations every time
    assert len(calls) == 30 and all(len(c) <= 15 for c in calls[1:])


def test_fast_tokens_are_the_tokens_of_each_row():
    rng = random.Random(5)
    alphabet = "abcXYZ '-,.!?\t\n\x0012"
    for _ in range(300):
        texts = [None if rng.random() < 0.1 else "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
                 for _ in range(rng.randint(0, 6))]
        for lower in (True, False):
            tokens, rows = tokenize_batch(texts, lower)
            fast_tokens, fast_rows = lexfilter.token_rows(texts, lower)
            assert list(zip(fast_rows.tolist(), fast_tokens.to_pylist())) == list(
                zip(rows.tolist(), tokens.to_pylist())), texts
    non_ascii = ["Élève ng’ombe", "abc"]
    assert lexfilter.token_rows(non_ascii)[0].to_pylist() == ["élève", "ng'ombe", "abc"]


def test_capped_options_reach_the_scorer(tmp_path):
    opts = LexFilterOptions(lexicon=write_target(tmp_path), threshold=0.4, max_word_edits=1, max_word_distance=0.3)
    scorer = lexfilter.load_scorer(opts)
    assert (scorer.index.max_edits, scorer.index.max_distance) == (1, 0.3)
    text = "mwalimo xyzzy kitabu"  # one edit, nothing near, exact
    assert scorer.score([text])[0] == pytest.approx((1 / 7 + 1.0 + 0.0) / 3, abs=1e-6)
    assert scorer.score([text])[0] == pytest.approx(sentence_brute_capped(text, TARGET, 0.3, 1), abs=1e-6)
    with pytest.raises(ValueError, match="max_word_distance"):
        LexFilterOptions(lexicon="x", threshold=0.1, max_word_distance=1.0)
    with pytest.raises(ValueError, match="max_word_edits"):
        LexFilterOptions(lexicon="x", threshold=0.1, max_word_edits=4)


def sentence_brute_capped(text: str, lexicon: list[str], max_distance, max_edits) -> float:
    tokens = REF_WORD.findall(text.lower())
    return sum(capped_brute(t, lexicon, max_distance, max_edits) for t in tokens) / len(tokens)


def test_empty_lexicon_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        NearestWordIndex([])


# --- normalisation and tokens --------------------------------------------------------------
def test_normalisation():
    assert normalize_text("Élève Ñandú", lowercase=True, fold_diacritics=True) == "eleve nandu"
    assert normalize_text("Élève", lowercase=False) == "Élève"
    assert normalize_text("e\u0301") == "\u00e9"  # NFC: decomposed and precomposed agree
    assert tokenize("Ng’ombe wa-kale, 'mtu' -- 12 abc'") == ["ng'ombe", "wa-kale", "mtu", "abc"]
    assert tokenize("नमस्ते दुनिया") == ["नमस्ते", "दुनिया"]  # vowel signs and virama stay in the word
    assert tokenize("...!! 42") == []


@pytest.mark.parametrize("texts", [
    ["Jambo, RAFIKI!", None, "", "a\x00b c", "Éa–b e\u0301", "mwana-mke ng'ombe--x", "12 34"],
    ["Jambo, RAFIKI!", None, "a\x00b c", "it's -a- 'b' x-y-z--w", "", "q"],  # ASCII-only batch: fast path
])
def test_tokenize_batch_matches_per_text(texts):
    for lower, fold in ((True, False), (True, True), (False, False)):
        tokens, rows = tokenize_batch(texts, lowercase=lower, fold_diacritics=fold)
        expected = [(i, t) for i, text in enumerate(texts)
                    for t in tokenize((text or "").replace("\x00", " "), lower, fold)]
        assert list(zip(rows.tolist(), tokens.to_pylist())) == expected


# --- the lexicon -----------------------------------------------------------------------------
def test_lexicon_parquet_round_trip(tmp_path):
    texts = ["Maji ni uhai. Maji safi!", "MAJI na chakula", None, "Chakula CHA élève", "élève"]
    table = build_lexicon(texts, LexiconOptions(lowercase=True, fold_diacritics=True, min_count=2))
    assert table.column_names == ["word", "count"]
    assert list(zip(table.column("word").to_pylist(), table.column("count").to_pylist())) == [
        ("maji", 3), ("chakula", 2), ("eleve", 2)]
    path = tmp_path / "lex.parquet"
    write_lexicon(table, path)
    lex = read_lexicon(path)
    assert (lex.words, lex.counts.tolist(), lex.lowercase, lex.fold_diacritics) == (
        ["maji", "chakula", "eleve"], [3, 2, 2], True, True)
    assert lex.to_table().equals(table)
    assert build_lexicon(texts, LexiconOptions(max_words=1)).column("word").to_pylist() == ["maji"]


def test_lexicon_normalised_views():
    lex = Lexicon(["Maji", "maji", "Élève"], [5, 2, 1], lowercase=False, fold_diacritics=False)
    folded = lex.normalized(lowercase=True, fold_diacritics=True)
    assert (folded.words, folded.counts.tolist()) == (["maji", "eleve"], [7, 1])
    with pytest.raises(ValueError, match="cannot be compared"):
        folded.normalized(lowercase=False)
    assert lex.normalized() is lex


# --- sentence scores ---------------------------------------------------------------------------
TARGET = ("kitabu mtoto nyumba chakula shule rafiki maji mkono barabara habari asante jambo ndizi samaki kazi "
          "mwalimu watoto vitabu nyumbani leo kesho sasa mimi wewe yeye sisi ninyi wao na ya wa kwa").split()
COGNATE_SENTENCES = ["Kitapu na mtotu wa nyumpani.", "Mwalimo ana shakula na mazi leo.",
                     "Watotu wa shula wanaenda barapara.", "Rafiqi yangu ana kazy kesho.",
                     "Asanti kwa habary za samaki."]
UNRELATED_SENTENCES = ["The yellow window is quite broken.", "Grüße aus der fröhlichen Großstadt!",
                       "Quickly bring the strong wooden chairs.", "Thoughtful strangers whisper through gardens.",
                       "Xylophones vibrate rhythmically overnight."]


def test_sentence_scores_equal_brute_force():
    rng = random.Random(11)
    texts = COGNATE_SENTENCES + UNRELATED_SENTENCES + [None, "", "... 123", "a", "Ndizi-ndizi za O'Neill"]
    texts += [" ".join(random_word(rng, "abkmnostuwi", 1, 12) for _ in range(rng.randint(1, 12)))
              for _ in range(30)]
    lexicon = Lexicon.from_counts({w: i + 1 for i, w in enumerate(TARGET)})
    for weighting in ("none", "length"):
        got = SentenceScorer(lexicon, weighting=weighting).score(pa.array(texts, pa.string()))
        expected = np.array([sentence_brute(t, TARGET, weighting) for t in texts])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, equal_nan=True)
        assert np.isnan(got[10:13]).all() and not np.isnan(got[13])
        ascii_only = [t for t in texts if t and t.isascii()]  # takes the ASCII tokeniser
        assert len(ascii_only) > 30
        np.testing.assert_allclose(SentenceScorer(lexicon, weighting=weighting).score(ascii_only),
                                   [sentence_brute(t, TARGET, weighting) for t in ascii_only], rtol=0, atol=1e-6)


def test_length_weighting_discounts_short_words():
    lexicon = Lexicon.from_counts({"mwalimu": 3, "chakula": 2})
    text = ["mwalimu chakula xy"]  # two exact content words and one short stray
    plain = SentenceScorer(lexicon).score(text)[0]
    weighted = SentenceScorer(lexicon, weighting="length").score(text)[0]
    assert plain == pytest.approx(1 / 3, abs=1e-6) and weighted == pytest.approx(2 / 16, abs=1e-6)


def test_ngram_profiles():
    assert word_ngrams("ab") == ["a", "b", " a", "ab", "b ", " ab", "ab "]
    lexicon = Lexicon.from_counts({w: 10 for w in TARGET})
    for metric in ("ngram_cosine", "ngram_out_of_place"):
        scorer = SentenceScorer(lexicon, metric=metric)
        scores = scorer.score(COGNATE_SENTENCES + UNRELATED_SENTENCES + ["!!"])
        assert np.isnan(scores[-1]) and ((0 <= scores[:-1]) & (scores[:-1] <= 1)).all()
        assert scores[:5].max() < scores[5:10].min(), (metric, scores)
    profile = lexicon.profile(50)
    assert profile.cosine_distance(profile) == pytest.approx(0.0, abs=1e-9)
    assert profile.out_of_place(profile) == 0.0


# --- selection ---------------------------------------------------------------------------------
def write_target(tmp_path) -> str:
    path = tmp_path / "target.parquet"
    write_lexicon(build_lexicon([" ".join(TARGET)] * 3), path)
    return str(path)


def test_threshold_keeps_the_near_cognate_sentences(tmp_path):
    opts = LexFilterOptions(lexicon=write_target(tmp_path), threshold=0.4)
    scorer = lexfilter.load_scorer(opts)
    texts = [COGNATE_SENTENCES[0], UNRELATED_SENTENCES[0], COGNATE_SENTENCES[1], "—", UNRELATED_SENTENCES[1],
             COGNATE_SENTENCES[2], UNRELATED_SENTENCES[2], COGNATE_SENTENCES[3], COGNATE_SENTENCES[4],
             UNRELATED_SENTENCES[3], UNRELATED_SENTENCES[4]]
    kept, rejected = filter_batch(docs(texts), scorer, opts.threshold, opts.metric)
    assert kept.column("id").to_pylist() == ["d0", "d2", "d5", "d7", "d8"]
    assert kept.schema.field("lex_distance") == LEXFILTER_FIELDS[0]
    assert kept.column("lex_metric").to_pylist() == ["levenshtein"] * 5
    assert all(0 < d <= 0.4 for d in kept.column("lex_distance").to_pylist())
    assert rejected.schema == REJECTED_SCHEMA
    reasons = dict(zip(rejected.column("id").to_pylist(), rejected.column("reason").to_pylist()))
    assert reasons == {"d1": "lexically_distant", "d3": "no_words", "d4": "lexically_distant",
                       "d6": "lexically_distant", "d9": "lexically_distant", "d10": "lexically_distant"}
    detail = json.loads(rejected.column("detail")[rejected.column("id").to_pylist().index("d1")].as_py())
    assert detail["threshold"] == 0.4 and detail["metric"] == "levenshtein" and detail["lex_distance"] > 0.4
    assert set(rejected.column("stage").to_pylist()) == {"lexfilter"}


def test_rows_of_other_languages_pass_through(tmp_path):
    stage = LexicalFilter(LexFilterOptions(lexicon=write_target(tmp_path), threshold=0.4, langs=["SWH"]))
    stage.setup()
    scorer = stage.scorer
    batch = docs([UNRELATED_SENTENCES[0], UNRELATED_SENTENCES[0], COGNATE_SENTENCES[0], "", None],
                 langs=["eng", "swh", "swh", None, "eng"])
    scores, applies = score_batch(batch, scorer, stage.langs)
    assert applies.tolist() == [False, True, True, False, False] and np.isnan(scores[[0, 3, 4]]).all()
    kept, rejected = stage.process(batch)[:2]
    assert kept.column("id").to_pylist() == ["d0", "d2", "d3", "d4"]
    assert kept.column("lex_distance").is_null().to_pylist() == [True, False, True, True]
    assert kept.column("lex_metric").to_pylist() == [None, "levenshtein", None, None]
    assert kept.column("text").to_pylist()[0] == UNRELATED_SENTENCES[0]
    assert rejected.column("id").to_pylist() == ["d1"]
    with pytest.raises(LexFilterConfigError, match="lang"):
        score_batch(docs(["x"]), scorer, stage.langs)


def test_options_are_validated():
    with pytest.raises(ValueError, match="exactly one"):
        LexFilterOptions(enabled=True, lexicon="x")
    with pytest.raises(ValueError, match="exactly one"):
        LexFilterOptions(enabled=True, lexicon="x", threshold=0.2, keep_fraction=0.5)
    with pytest.raises(ValueError, match="exactly one"):  # the stage checks even when not enabled by config
        LexicalFilter(LexFilterOptions(lexicon="x")).check()
    with pytest.raises(ValueError, match="keep_fraction"):
        LexFilterOptions(lexicon="x", keep_fraction=0)
    with pytest.raises(ValueError, match="metric"):
        LexFilterOptions(lexicon="x", threshold=0.1, metric="jaccard")
    assert LexicalFilter(LexFilterOptions(lexicon="x", threshold=0.1, langs=[" SWH "])).langs == ("swh",)


# --- Beam ------------------------------------------------------------------------------------------
_SEEN: dict[str, list] = {}


def _store(tag: str, batches) -> None:
    _SEEN[tag] = list(batches)


def collect(outputs) -> dict[str, list]:
    """What reaches each output, for inspection after the run (the DirectRunner runs in this
    process; a module-level function is pickled by reference, so it fills this module's dict)."""
    _SEEN.clear()
    for tag in (KEPT, REJECTED, DEAD_LETTER):
        assert_that(outputs[tag], functools.partial(_store, tag), label=f"Collect{tag}")
    return _SEEN


def related_corpus(n: int, seed: int = 5) -> list[str]:
    """Sentences mixing target words, near-cognates and unrelated words in varying shares."""
    rng = random.Random(seed)
    unrelated = [w.lower().strip(".!") for s in UNRELATED_SENTENCES for w in s.split()]
    texts = []
    for i in range(n):
        share = rng.random()
        words = []
        for _ in range(rng.randint(4, 12)):
            if rng.random() < share:
                words.append(rng.choice(unrelated))
            else:
                w = rng.choice(TARGET)
                words.append(w if rng.random() < 0.5 else w[:-1] + rng.choice("aeiouy"))
        texts.append(" ".join(words) if i % 97 else "12 — 34")  # a few rows without words
    return texts


def test_keep_fraction_through_the_direct_runner(tmp_path):
    texts = related_corpus(2000)
    batches = [docs(texts[i:i + 250], start=i) for i in range(0, len(texts), 250)]
    opts = LexFilterOptions(lexicon=write_target(tmp_path), keep_fraction=0.3)
    with beam.Pipeline("DirectRunner") as p:
        seen = collect(p | beam.Create(batches, reshuffle=False) | LexicalFilter(opts).transform())
    kept = pa.Table.from_batches(seen[KEPT])
    rejected = pa.Table.from_batches(seen[REJECTED], REJECTED_SCHEMA)
    assert not seen[DEAD_LETTER]
    assert kept.num_rows + rejected.num_rows == len(texts)
    reasons = rejected.column("reason").to_pylist()
    no_words = reasons.count("no_words")
    assert no_words == sum(1 for t in texts if t == "12 — 34")
    scored = len(texts) - no_words
    assert abs(kept.num_rows / scored - 0.3) <= 0.03, kept.num_rows / scored
    cut = max(kept.column("lex_distance").to_pylist())
    distant = [json.loads(d) for d, r in zip(rejected.column("detail").to_pylist(), reasons)
               if r == "lexically_distant"]
    assert all(d["lex_distance"] > cut - 1e-6 and d["keep_fraction"] == 0.3 for d in distant)
    assert kept.schema.names[-2:] == ["lex_distance", "lex_metric"]


def test_failing_rows_become_dead_letters(tmp_path, monkeypatch):
    real = SentenceScorer.score

    def score(self, texts):
        if any("💥" in (t or "") for t in (texts.to_pylist() if hasattr(texts, "to_pylist") else texts)):
            raise RuntimeError("scorer exploded")
        return real(self, texts)

    monkeypatch.setattr(SentenceScorer, "score", score)
    opts = LexFilterOptions(lexicon=write_target(tmp_path), threshold=0.4, langs=["swh"])
    batch = docs([COGNATE_SENTENCES[0], "💥 jambo", UNRELATED_SENTENCES[0], COGNATE_SENTENCES[1]],
                 langs=["swh", "swh", "swh", "eng"])
    with beam.Pipeline("DirectRunner") as p:
        seen = collect(p | beam.Create([batch]) | LexicalFilter(opts).transform())
    dead = pa.Table.from_batches(seen[DEAD_LETTER], DEAD_LETTER_SCHEMA)
    assert dead.column("id").to_pylist() == ["d1"] and "scorer exploded" in dead.column("error")[0].as_py()
    assert dead.column("raw")[0].as_py() == "💥 jambo".encode()
    assert sorted(pa.Table.from_batches(seen[KEPT]).column("id").to_pylist()) == ["d0", "d3"]
    assert pa.Table.from_batches(seen[REJECTED]).column("id").to_pylist() == ["d2"]


# --- language distance report ------------------------------------------------------------------------
def test_distance_report_ranks_the_closer_language_first():
    rng = random.Random(2)
    target = Lexicon.from_counts({w: 100 - i for i, w in enumerate(TARGET)})
    close = Lexicon.from_counts({(w[:-1] + "i" if rng.random() < 0.5 else w): 100 - i for i, w in enumerate(TARGET)})
    far = Lexicon.from_counts({w.lower().strip(".!,"): 50 for s in UNRELATED_SENTENCES for w in s.split()})
    rows = language_distances(target, {"far": far, "close": close, "same": target}, top_n=100)
    assert [r["lang"] for r in rows] == ["same", "close", "far"]
    assert rows[0]["levenshtein"] == 0.0 and rows[0]["ngram_cosine"] == pytest.approx(0, abs=1e-9)
    assert rows[1]["ngram_cosine"] < rows[2]["ngram_cosine"]
    assert rows[1]["ngram_out_of_place"] < rows[2]["ngram_out_of_place"]
    report = format_distance_report(rows).splitlines()
    assert report[0].split() == ["rank", "lang", "levenshtein", "ngram_cosine", "ngram_out_of_place", "words"]
    assert [line.split()[1] for line in report[1:]] == ["same", "close", "far"]
