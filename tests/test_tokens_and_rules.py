"""Offset-preserving tokenizer and the rule-table transliterator (Maltese -> Arabic script)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xlcorpus.transforms.stages.transliterate.rule_tables import RuleTable, load_table, shipped_tables
from xlcorpus.transforms.text.tokens import tokenize, words


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
