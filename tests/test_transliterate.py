"""Transliteration stage core: policies, composition, offset maps and span remapping."""

from __future__ import annotations

from importlib.metadata import version

import numpy as np
import pyarrow as pa
import pytest
import uroman

from xlcorpus.schemas import DOCUMENT_SCHEMA, SPAN, TRANSLIT_FIELDS
from xlcorpus.transforms.stages.transliterate import stage as tl
from xlcorpus.transforms.stages.transliterate.policies import Policy, load_policy, shipped_policies
from xlcorpus.transforms.stages.transliterate.stage import Transliterator, fold_diacritics, map_span
from xlcorpus.transforms.text.scripts import script_of
from xlcorpus.transforms.text.tokens import words


def policy_file(tmp_path, text: str) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return str(path)


def test_shipped_policies_load():
    assert {"maltese-arabic", "romanize-non-latin"} <= set(shipped_policies())
    p = load_policy("maltese-arabic")
    assert p.labeler == "etymology" and p.action_for("Arabic") == "transliterate:mlt-Arab"
    assert p.action_for("Non-Arabic") == "keep" and p.action_for("Name") == "keep"
    r = load_policy("romanize-non-latin")
    assert r.action_for("Cyrl") == "romanize" and r.action_for("Latn") == "keep"


def test_bad_policy_names_the_label():
    with pytest.raises(ValueError, match="actions.Arabic"):
        Policy("p", "script", {"Arabic": "paint"})
    with pytest.raises(ValueError, match="labeler"):
        Policy("p", "dice", {})


def test_fold_diacritics():
    assert fold_diacritics("café naïve") == "cafe naive"
    assert fold_diacritics("ħobż") == "ħobz"  # ħ is a letter of its own, ż is z + dot above


def test_rule_table_policy_and_offsets(tmp_path):
    path = policy_file(tmp_path, "name: all-arabic\nlabeler: script\nactions:\n  Latn: transliterate:mlt-Arab\n")
    tr = Transliterator({"mlt": path})
    text = "Il-kelb, ix-xemx!"
    [res] = tr.transliterate_batch([text], ["mlt"])
    assert res.text == "الكلب, الشمش!"
    assert [(w["start"], w["end"], w["origin"], w["action"]) for w in res.tokens] == [
        (0, 3, "Latn", "transliterate:mlt-Arab"), (3, 7, "Latn", "transliterate:mlt-Arab"),
        (9, 12, "Latn", "transliterate:mlt-Arab"), (12, 16, "Latn", "transliterate:mlt-Arab")]
    # the map covers the source contiguously and the output contiguously
    o = res.offsets
    assert o[0, 0] == 0 and o[-1, 1] == len(text) and (o[1:, 0] == o[:-1, 1]).all()
    assert o[0, 2] == 0 and o[-1, 3] == len(res.text) and (o[1:, 2] == o[:-1, 3]).all()
    # spans: whole words move; boundaries inside one rule's source have no honest answer
    assert map_span(o, 0, 7) == (0, 5)  # "Il-kelb" -> "الكلب"
    assert res.text[slice(*map_span(o, 9, 16))] == "الشمش"
    assert res.text[slice(*map_span(o, 4, 6))] == "ل"  # "el": e is unwritten, l -> ل
    assert map_span(o, 1, 5) is None  # starts inside the article "Il-", one whole-token rule
    assert map_span(o, 7, 8) == (5, 6)  # the comma is kept


def test_languages_without_a_policy_pass_through(tmp_path):
    path = policy_file(tmp_path, "name: fold\nlabeler: script\nactions: {}\ndefault: fold_diacritics\n")
    tr = Transliterator({"fra": path})
    res = tr.transliterate_batch(["Ça été", "Ça été"], ["fra", "deu"])
    assert res[0].text == "Ca ete" and res[1] is None


def test_romanize_non_latin_matches_uroman_on_non_latin_words():
    tr = Transliterator({"*": "romanize-non-latin"})
    u = uroman.Uroman()
    texts = ["Привет, мир!", "Mixed Ελληνικά and ASCII", "नमस्ते दुनिया", "café Москва"]
    results = tr.transliterate_batch(texts, ["rus", "ell", "hin", "fra"])
    assert results[0].text == u.romanize_string(texts[0])
    assert results[1].text == "Mixed " + u.romanize_string("Ελληνικά") + " and ASCII"
    assert results[2].text == u.romanize_string(texts[2])
    assert results[3].text == "café " + u.romanize_string("Москва")  # Latin words are kept, diacritics too
    assert [w["origin"] for w in results[3].tokens] == ["Latn", "Cyrl"]
    o = results[0].offsets
    assert results[0].text[slice(*map_span(o, 0, 6))] == u.romanize_string("Привет")


def test_map_span_edge_cases():
    o = np.array([[0, 3, 0, 2], [3, 4, 2, 2], [4, 6, 2, 4]], np.int32)  # middle piece dropped
    assert map_span(o, 0, 6) == (0, 4)
    assert map_span(o, 3, 4) is None  # maps to nothing
    assert map_span(o, 0, 7) is None  # beyond the text
    assert map_span(o, 2, 2) is None
    assert map_span(np.zeros((0, 4), np.int32), 0, 1) is None


def test_annotate_rejects_rows_whose_spans_cannot_follow(tmp_path):
    path = policy_file(tmp_path, "name: all-arabic\nlabeler: script\nactions:\n  Latn: transliterate:mlt-Arab\n")
    rows = [{"id": "a", "text": "Il-kelb ta' Marija", "source": "s", "line": 1, "offset": 0, "meta": None},
            {"id": "b", "text": "ix-xemx", "source": "s", "line": 2, "offset": 20, "meta": None}]
    batch = pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA)
    batch = batch.append_column("lang", pa.array(["mlt", "mlt"]))
    batch = batch.append_column("ents", pa.array([[{"start": 12, "end": 18, "label": "PER"}],
                                                  [{"start": 1, "end": 5, "label": "X"}]], pa.list_(SPAN)))
    kept, rejected = tl.annotate(batch, Transliterator({"mlt": path}), tl.TransliterateOptions(
        policies={"mlt": path}, spans_column="ents"))
    assert kept.column("id").to_pylist() == ["a"]
    assert kept.schema.names[-len(TRANSLIT_FIELDS):] == [f.name for f in TRANSLIT_FIELDS]
    text = kept.column("translit_text")[0].as_py()
    [span] = kept.column("translit_spans")[0].as_py()
    assert text[span["start"]:span["end"]] == "مريا" and span["label"] == "PER"
    assert rejected.column("reason").to_pylist() == ["span_unmappable"]
    assert '"label":"X"' in rejected.column("detail")[0].as_py()


def test_stage_normalises_languages_and_reports_policies_as_configured(tmp_path):
    path = policy_file(tmp_path, "name: fold\nlabeler: script\nactions: {}\ndefault: fold_diacritics\n")
    stage = tl.Transliterate(tl.TransliterateOptions(policies={"fr": path, "*": "romanize-non-latin"}))
    assert stage.name == "transliterate" and stage.fields == TRANSLIT_FIELDS
    assert stage.dead_reason == "transliteration_error"
    assert stage.policies == {"fra": path, "*": "romanize-non-latin"}
    stage.check()
    stage.setup()
    rows = [{"id": "a", "text": "Ça été", "source": "s", "line": 1, "offset": 0, "meta": None}]
    batch = pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA).append_column("lang", pa.array(["fra"]))
    result = stage.process(batch)
    assert result.kept.column("translit_text").to_pylist() == ["Ca ete"] and result.rejected is None
    assert stage.report() == {"policies": {"fr": path, "*": "romanize-non-latin"}, "uroman": version("uroman")}
    assert tl.TransliterateOptions().model_dump() == {
        "enabled": False, "policies": {"mlt": "maltese-arabic"}, "spans_column": None}


MIXED = ["Привет, мир!", "Mixed Ελληνικά and ASCII", "नमस्ते दुनिया", "café Москва", "", "...", "1,000 км",
         "Il-kelb ta' Marija", "東京は日本の首都 and Tokyo", None, "abc-def don’t Ж’", "ħobż\nхлеб", "  two  spaces  "]


@pytest.mark.parametrize("policies, langs", [
    ({"*": "romanize-non-latin"}, None),
    ({"mlt": "maltese-arabic", "*": "romanize-non-latin"}, ["mlt", "rus"]),
    ({"fra": "fold", "mlt": "maltese-arabic"}, ["fra", "mlt", "deu"]),
])
def test_batch_results_equal_row_by_row_results(tmp_path, policies, langs):
    """The batch path (words of all rows at once, shortcuts for rows that keep or romanize
    every word) gives each row what it gets alone, and its words are tokenize's."""
    if "fra" in policies:
        policies = {**policies, "fra": policy_file(tmp_path, "name: fold\nlabeler: script\nactions: {}\n"
                                                             "default: fold_diacritics\n")}
    texts = MIXED * 2
    row_langs = [None if langs is None else langs[i % len(langs)] for i in range(len(texts))]
    tr = Transliterator(policies)
    batch = tr.transliterate_batch(texts, row_langs)
    for text, lang, got in zip(texts, row_langs, batch):
        [alone] = Transliterator(policies).transliterate_batch([text], [lang])
        if alone is None:
            assert got is None and (text is None or tr.policy_for(lang) is None)
            continue
        assert got.text == alone.text and got.tokens == alone.tokens
        assert got.offsets.shape == alone.offsets.shape and (got.offsets == alone.offsets).all()
        assert [(w["start"], w["end"]) for w in got.tokens] == [(t.start, t.end) for t in words(text)]
        policy = tr.policy_for(lang)
        if policy.labeler == "script":
            assert [w["origin"] for w in got.tokens] == [script_of(t.text) for t in words(text)]
        assert [w["action"] for w in got.tokens] == [policy.action_for(w["origin"]) for w in got.tokens]
        actions = {w["action"] for w in got.tokens}
        if actions <= {"keep"}:
            assert got.text == text
        elif actions == {"romanize"}:
            assert got.text == uroman.Uroman.romanize_string(tr.romanizer._uroman, text)


def test_columns_hold_the_batch_results():
    tr = Transliterator({"*": "romanize-non-latin", "xxx": "maltese-arabic"})
    texts = ["Привет, мир!", None, "café Москва", "", "Il-kelb"]
    langs = ["rus", "rus", None, "fra", "deu"]
    batch = pa.RecordBatch.from_pydict({"text": pa.array(texts, pa.string()), "lang": pa.array(langs)})
    columns, verdicts = tl.transliterate_columns(batch, tr, None)
    results = tr.transliterate_batch(texts, langs)
    assert verdicts == [None] * 5
    assert columns["translit_text"].to_pylist() == [r.text if r else None for r in results]
    assert columns["translit_tokens"].to_pylist() == [r.tokens if r else None for r in results]
    assert columns["translit_tokens"].to_pylist()[3] == [] and columns["translit_tokens"][1].as_py() is None
    assert columns["translit_policy"].to_pylist() == ["romanize-non-latin", None, "romanize-non-latin",
                                                      "romanize-non-latin", "romanize-non-latin"]
    assert columns["translit_offsets"].to_pylist() == [r.offsets.tolist() if r else None for r in results]
    assert columns["translit_tokens"].type == TRANSLIT_FIELDS[2].type


def test_rows_without_words_load_no_classifier():
    tr = Transliterator({"mlt": "maltese-arabic"})
    [res] = tr.transliterate_batch(["12, 13 ..."], ["mlt"])
    assert res.text == "12, 13 ..." and res.tokens == [] and res.offsets.tolist() == [[0, 10, 0, 10]]
    assert tr._classifiers == {}
