"""Offset-preserving tokenizer and the rule-table transliterator (Maltese -> Arabic script)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlcorpus.transforms.stages.transliterate.rule_tables import RuleTable, load_table, shipped_tables
from xlcorpus.transforms.text.scripts import majority_scripts, script_counts, span_scripts
from xlcorpus.transforms.text.tokens import tokenize, word_spans, words


def test_tokens_follow_mlrs_conventions():
    toks = tokenize("Il-kelb ta' Marija mar fil-ġnien, ix-xemx.")
    assert [(t.text, t.kind) for t in toks if t.kind != "space"] == [
        ("Il-", "word"), ("kelb", "word"), ("ta'", "word"), ("Marija", "word"), ("mar", "word"), ("fil-", "word"),
        ("ġnien", "word"), (",", "punct"), ("ix-", "word"), ("xemx", "word"), (".", "punct")]


def test_tokens_carry_offsets_numbers_and_scripts():
    text = "Привет,  мир! 1,000.5 km — don't क्षत्रिय"
    toks = tokenize(text)
    assert all(text[t.start:t.end] == t.text for t in toks)
    assert [t.text for t in words(text)] == ["Привет", "мир", "km", "don't", "क्षत्रिय"]
    assert ("1,000.5", "number") in [(t.text, t.kind) for t in toks]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_tokens_reconstruct_any_text(text):
    toks = tokenize(text)
    assert "".join(t.text for t in toks) == text
    assert all(a.end == b.start for a, b in zip(toks, toks[1:]))


@pytest.mark.parametrize("word, arabic", [
    ("kelb", "كلب"), ("qalb", "قلب"), ("Qalb", "قلب"), ("ħobż", "حبز"), ("xemx", "شمش"), ("ktieb", "كتيب"),
    ("għarus", "عرس"), ("ħames", "حمس"), ("ismu", "إسمو"), ("ta'", "تع"), ("aħwa", "أحوا"), ("Ġunju", "جنيو"),
    ("dolla", "دلا"), ("il-", "ال"), ("L-", "ال"), ("ix-", "ال"), ("iż-", "ال"), ("t-", "ال"), ("bil-", "بال"),
    ("mill-", "من ال"), ("għall-", "عال"),
])
def test_maltese_arabic_table(word, arabic):
    assert load_table("mlt-Arab").transliterate(word)[0] == arabic


def test_offset_map_covers_the_word_and_the_output():
    out, offsets = load_table("mlt-Arab").transliterate("ktieb")
    assert offsets.tolist() == [[0, 1, 0, 1], [1, 2, 1, 2], [2, 4, 2, 3], [4, 5, 3, 4]]  # "ie" is one rule
    out, offsets = load_table("mlt-Arab").transliterate("kelb")
    assert offsets.tolist() == [[0, 1, 0, 1], [1, 2, 1, 1], [2, 3, 1, 2], [3, 4, 2, 3]]  # medial e -> ""
    assert offsets[-1][1] == 4 and offsets[-1][3] == len(out)


def test_longest_match_contexts_and_passthrough():
    table = RuleTable.from_dict({"rules": [["a", "1"], ["ab", "2"], ["a", "3", "initial"], ["b", "4", "final"],
                                           ["c", "5", "medial"]]})
    assert table.transliterate("aab")[0] == "32"  # initial a, then longest "ab"
    assert table.transliterate("bcb")[0] == "b54"  # no initial rule for b: copied
    assert table.transliterate("ZaZ")[0] == "Z1Z"
    assert table.transliterate("")[0] == ""


def test_bad_tables_are_rejected_with_the_row():
    with pytest.raises(ValueError, match=r"rules\[1\]"):
        RuleTable.from_dict({"rules": [["a", "b"], ["a", "b", "sideways"]]})
    with pytest.raises(ValueError, match="duplicate"):
        RuleTable.from_dict({"rules": [["a", "b"], ["a", "c"]]})
    with pytest.raises(FileNotFoundError, match="mlt-Arab"):
        load_table("no-such-table")


def test_shipped_tables():
    assert "mlt-Arab" in shipped_tables()


# --- many texts at once: words by one split, scripts without a count matrix -------------
TRICKY_TEXT = st.text(alphabet=st.sampled_from(list("ab -'’\n.,1٣") + list("\u0301éЖשक\u094dष東ー")),
                      max_size=30)
# words of mixed scripts
SCRIPT_SOUP = st.text(alphabet=st.sampled_from(list("aЖשक東ыαあ1 -'\u0301")), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), TRICKY_TEXT), max_size=8))
def test_word_spans_are_tokenize_words(texts):
    spans = word_spans(texts)
    want = [(row, t.text, t.start, t.end) for row, text in enumerate(texts) for t in words(text)]
    got = list(zip(spans.row.tolist(), spans.text, spans.start.tolist(), spans.end.tolist()))
    assert got == want


def test_word_spans_of_nothing():
    spans = word_spans([])
    assert spans.text == [] and len(spans.row) == len(spans.start) == len(spans.end) == 0
    assert word_spans(["", "..."]).text == []


def majority_by_counts(texts: list[str]) -> list[str]:
    """The reference: the argmax of the full (texts x scripts) count matrix."""
    counts, codes = script_counts(pa.array(texts, pa.string()))
    best = counts.argmax(axis=1)
    best[counts.sum(axis=1) == 0] = 0
    return [codes[i] for i in best]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), TRICKY_TEXT, SCRIPT_SOUP), max_size=30))
def test_majority_scripts_equal_the_count_matrix(texts):
    assert majority_scripts(pa.array(texts, pa.string())).to_pylist() == majority_by_counts(texts)


def test_majority_scripts_ties_and_mixed_words():
    texts = ["abЖЖ", "abЖ", "ЖЖab", "aЖ", "Жa", "", "12", "кот", "ab\u0301"]
    assert majority_scripts(pa.array(texts)).to_pylist() == majority_by_counts(texts)
    assert majority_scripts(pa.array(texts)).to_pylist()[:7] == ["Cyrl", "Latn", "Cyrl", "Cyrl", "Cyrl", "Zyyy",
                                                                 "Zyyy"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), TRICKY_TEXT, SCRIPT_SOUP), max_size=8))
def test_span_scripts_of_words_equal_majority_scripts(texts):
    spans = word_spans(texts)
    assert [spans.joined[a:a + len(w)] for a, w in zip(spans.at.tolist(), spans.text)] == spans.text
    found, codes = span_scripts(spans.joined, spans.at, spans.at + (spans.end - spans.start))
    assert [codes[i] for i in found] == majority_scripts(pa.array(spans.text, pa.string())).to_pylist()


def test_span_scripts_of_slices_ending_at_the_end():
    found, codes = span_scripts("ЖЖab кот", np.array([0, 5]), np.array([4, 8]))
    assert [codes[i] for i in found] == ["Cyrl", "Cyrl"]  # a tie goes to the script listed first
    found, codes = span_scripts("12 ab", np.array([0, 3]), np.array([2, 5]))
    assert [codes[i] for i in found] == ["Zyyy", "Latn"]
