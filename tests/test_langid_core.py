"""Unit tests for the language-ID core: no Beam, real lid.176 model."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from xlcorpus.schemas import LANGID_FIELDS, REJECTED_SCHEMA, dataset_schema
from xlcorpus.transforms.core.accounting import DEAD_LETTER
from xlcorpus.transforms.core.beam import StageFn
from xlcorpus.transforms.stages import langid
from xlcorpus.transforms.text.scripts import majority_scripts
from xlcorpus.transforms.stages.langid import (
    LangIdOptions, annotate, clean_for_lid, decide, identify, normalize_label,
    normalize_lang_code, usual_scripts,
)


@pytest.mark.parametrize("label, expected", [
    ("__label__en", ("eng", None)),
    ("__label__zh", ("zho", None)),
    ("__label__mt", ("mlt", None)),
    ("__label__sw", ("swa", None)),
    ("__label__yo", ("yor", None)),
    ("__label__als", ("gsw", None)),  # lid.176 Alemannic, not ISO "als" (Tosk Albanian)
    ("__label__sh", ("hbs", None)),
    ("__label__bh", ("bih", None)),
    ("__label__arz", ("arz", None)),
    ("__label__eng_Latn", ("eng", "Latn")),  # GlotLID / OpenLID
    ("__label__mlt_Latn", ("mlt", "Latn")),
    ("__label__arb_Arab", ("arb", "Arab")),
    ("__label__zxx_Zxxx", ("zxx", "Zxxx")),
    ("__label__und_Tibt", ("und", "Tibt")),
    ("__label__cmn_Hani", ("cmn", "Hani")),
    ("__label__jpn_Jpan", ("jpn", "Jpan")),
])
def test_normalize_label(label, expected):
    assert normalize_label(label) == expected


def test_normalize_lang_code_accepts_config_spellings():
    assert normalize_lang_code("mt") == "mlt"
    assert normalize_lang_code("MLT") == "mlt"
    assert normalize_lang_code("ger") == "deu"  # ISO 639-2/B
    assert normalize_lang_code("swh") == "swh"  # individual codes pass through
    assert normalize_lang_code("en-US") == "eng"


def test_every_lid176_label_normalises_to_three_letters(lid_model):
    codes = {normalize_label(l)[0] for l in lid_model.model.get_labels()}
    assert len(codes) == 176
    assert all(len(c) == 3 and c.isalpha() and c.islower() for c in codes), sorted(c for c in codes if len(c) != 3)


def test_majority_scripts():
    texts = pa.array(["Hello, world!", "Привет, мир", "مرحبا بالعالم", "नमस्ते दुनिया", "こんにちは世界",
                      "안녕하세요", "שלום עולם", "Γειά σου κόσμε", "12345 !!!", "", None,
                      "ሰላም ለዓለም", "abc абвгд"])
    assert majority_scripts(texts).to_pylist() == [
        "Latn", "Cyrl", "Arab", "Deva", "Hira", "Hang", "Hebr", "Grek", "Zyyy", "Zyyy", "Zyyy", "Ethi", "Cyrl"]


def test_majority_scripts_on_sliced_array():
    texts = pa.array(["Hello", "Привет", "שלום"]).slice(1)
    assert majority_scripts(texts).to_pylist() == ["Cyrl", "Hebr"]


def test_clean_for_lid_strips_noise_keeps_words():
    cleaned = clean_for_lid(pa.array([
        "Visit https://example.com/x?y=1 now", "mail me: a.b+c@example.org\nplease", "In 2024 we had 365 days",
        "www.example.com", "line\n\nbreaks\tand\u00a0spaces", None]))
    # runs of spaces may remain (fastText skips them); no other separator does
    assert [" ".join(t.split()) for t in cleaned.to_pylist()] == [
        "Visit now", "mail me: please", "In we had days", "", "line breaks and spaces", ""]
    assert not any(c in t for t in cleaned.to_pylist() for c in "\n\t\u00a0")


def test_runs_of_spaces_do_not_change_predictions(lid_model):
    lines = ["Visit   the   market  today", "Il-lingwa    Maltija  hija sabiħa"]
    assert lid_model.predict(lines, 3)[0] == lid_model.predict([" ".join(l.split()) for l in lines], 3)[0]


def test_usual_scripts():
    # From Unicode CLDR's languageData (primary and secondary scripts).
    assert usual_scripts("rus") == {"Cyrl"}
    assert "Latn" in usual_scripts("eng") and "Cyrl" not in usual_scripts("eng")
    assert {"Cyrl", "Latn"} <= usual_scripts("srp")
    assert {"Jpan", "Hani", "Hira", "Kana"} <= usual_scripts("jpn")
    assert {"Kore", "Hang", "Hani"} <= usual_scripts("kor")
    assert "Hani" in usual_scripts("zho") and "Hebr" in usual_scripts("heb")
    assert usual_scripts("jpn", "Jpan") == {"Jpan", "Hani", "Hira", "Kana"}
    assert usual_scripts("zxx") is None


def _choose(candidates, probs, text, **options):
    from xlcorpus.transforms.text.scripts import writing_systems

    scripts, counts = writing_systems(pa.array([text]))
    return langid.script_choice(candidates, np.asarray(probs, np.float32), scripts[0].as_py(), counts, 0,
                                LangIdOptions(**options))


def test_script_choice_switches_only_when_the_top_script_is_absent_and_the_candidate_is_likely():
    cyrillic = "Сегодня хорошая погода"
    # Cyrillic text, model says English first: a likely Russian candidate wins.
    assert _choose([("eng", None), ("rus", None), ("ukr", None)], [0.5, 0.3, 0.1], cyrillic) == (1, False)
    # ... but not a near-zero one: the model's answer stays and the disagreement is recorded.
    assert _choose([("eng", None), ("rus", None)], [0.9, 1e-5], cyrillic) == (0, True)
    assert _choose([("eng", None), ("rus", None)], [0.9, 1e-5], cyrillic, script_override_min_ratio=0.0) == (1, False)
    # The top candidate agrees: keep it.
    assert _choose([("rus", None), ("eng", None)], [0.9, 0.1], cyrillic) == (0, False)
    # Nobody agrees: keep the top candidate, record it.
    assert _choose([("eng", None), ("deu", None)], [0.6, 0.3], "مرحبا بالعالم") == (0, True)
    # No script in the text (digits, punctuation): no correction.
    assert _choose([("eng", None), ("rus", None)], [0.6, 0.3], "12 + 3 = 15") == (0, False)
    # Label scripts from GlotLID-style labels are used directly.
    assert _choose([("hin", "Latn"), ("hin", "Deva")], [0.6, 0.3], "नमस्ते दुनिया") == (1, False)
    # script_consistency off: never switch, still record.
    assert _choose([("eng", None), ("rus", None)], [0.5, 0.4], cyrillic, script_consistency=False) == (0, True)


def test_script_choice_keeps_a_language_whose_script_is_present():
    # Mostly Latin product names in a Hebrew UI string: Hebrew letters are there, keep hebrew.
    text = "פתח Settings > Privacy and Security"
    assert _choose([("heb", None), ("eng", None)], [0.7, 0.2], text)[0] == 0


def test_japanese_with_latin_identifiers_stays_japanese(lid_model):
    # The example: kana and Han are one writing system (Jpan), so the few Latin
    # letters of `open()` cannot make the text "Latin".
    texts = pa.array(["ファイル を open() で 開く", "設定 > Advanced を クリック します",
                      "한국어 설정에서 Dark mode를 켜세요", "כדי לשמור, לחץ על Ctrl+S ואז על Save"])
    raw = [normalize_label(lid_model.model.predict(t, k=1)[0][0])[0] for t in texts.to_pylist()]
    cols = identify(texts, lid_model, LangIdOptions())
    assert cols["script"].to_pylist() == ["Jpan", "Jpan", "Kore", "Hebr"]
    assert cols["lang"].to_pylist() == raw == ["jpn", "jpn", "kor", "heb"]
    assert cols["lang_script_override"].to_pylist() == [False] * 4
    assert cols["lang_script_mismatch"].to_pylist() == [False] * 4


def test_script_consistency_on_real_model(lid_model):
    # Serbian in Cyrillic must come out as a Cyrillic-script language.
    cols = identify(pa.array(["Ово је реченица на српском језику о времену."]), lid_model, LangIdOptions())
    assert cols["script"].to_pylist() == ["Cyrl"]
    assert "Cyrl" in usual_scripts(cols["lang"][0].as_py())


def test_identify_real_sentences(lid_model):
    texts = pa.array([
        "The weather is lovely today and we are going to the market.",
        "Das Wetter ist heute schön und wir gehen auf den Markt.",
        "Il fait beau aujourd'hui et nous allons au marché.",
        "Сегодня хорошая погода, и мы идём на рынок.",
        "今天天气很好，我们去市场。",
        "",
        "https://example.com 42",
    ])
    cols = identify(texts, lid_model, LangIdOptions(top_k=3))
    assert cols["lang"].to_pylist() == ["eng", "deu", "fra", "rus", "zho", "zxx", "zxx"]
    scores = cols["lang_score"].to_pylist()
    assert all(s > 0.5 for s in scores[:5]) and scores[5] is None and scores[6] is None
    topk = cols["lang_topk"].to_pylist()
    assert [len(t) for t in topk[:5]] == [3] * 5 and topk[5] is None
    assert topk[0][0] == {"lang": "eng", "script": None, "score": pytest.approx(scores[0])}
    assert topk[0][0]["score"] >= topk[0][1]["score"] >= topk[0][2]["score"]
    assert len(cols) == len(LANGID_FIELDS)


def _columns(langs, scores):
    return {"lang": pa.array(langs), "lang_score": pa.array(scores, pa.float32())}


def test_decide_thresholds_keep_list_and_empty():
    texts = pa.array(["a", "b", "c", "  ", "d", "e"])
    cols = _columns(["eng", "mlt", "deu", "zxx", "zxx", "mlt"], [0.9, 0.35, 0.99, None, None, 0.2])
    opts = LangIdOptions(threshold=0.5, thresholds={"mt": 0.3}, keep=("en", "mt")).normalized()
    decisions = decide(texts, cols, opts)
    assert [d and d[0] for d in decisions] == [
        None, None, "lid_not_kept", "empty_text", "no_linguistic_content", "lid_low_confidence"]
    assert decisions[5][1] == {"lang": "mlt", "lang_score": pytest.approx(0.2), "threshold": 0.3}


def test_decide_global_threshold_without_keep_list():
    decisions = decide(pa.array(["a", "b"]), _columns(["eng", "deu"], [0.49, 0.51]), LangIdOptions(threshold=0.5))
    assert [d and d[0] for d in decisions] == ["lid_low_confidence", None]


def test_label_only_rejects_nothing():
    decisions = decide(pa.array(["", "a"]), _columns(["zxx", "eng"], [None, 0.01]),
                       LangIdOptions(label_only=True, keep=("fra",)))
    assert decisions == [None, None]


def test_annotate_splits_kept_and_rejected(lid_model):
    from xlcorpus.schemas import DOCUMENT_SCHEMA

    batch = pa.RecordBatch.from_pylist([
        {"id": "1", "text": "The weather is lovely today and we are going to the market.", "source": "s", "line": 1,
         "offset": 0, "meta": None},
        {"id": "2", "text": "Das Wetter ist heute schön und wir gehen auf den Markt.", "source": "s", "line": 2,
         "offset": 70, "meta": '{"a":1}'},
        {"id": "3", "text": "", "source": "s", "line": 3, "offset": 140, "meta": None},
    ], schema=DOCUMENT_SCHEMA)
    kept, rejected = annotate(batch, lid_model, LangIdOptions(keep=("eng",)).normalized())
    assert kept.schema == dataset_schema(["langid"])
    assert kept.column("id").to_pylist() == ["1"]
    assert rejected.schema == REJECTED_SCHEMA
    assert rejected.column("id").to_pylist() == ["2", "3"]
    assert rejected.column("reason").to_pylist() == ["lid_not_kept", "empty_text"]
    assert rejected.column("stage").to_pylist() == ["langid", "langid"]
    assert rejected.column("meta").to_pylist() == ['{"a":1}', None]


def test_predict_matches_raw_fasttext(lid_model):
    lines = ["The weather is lovely today.", "Il-lingwa Maltija hija sabiħa ħafna.", "Habari za asubuhi rafiki yangu."]
    labels, probs = lid_model.predict(lines, 2)
    raw_labels, raw_probs = lid_model.model.predict(lines, k=2)
    assert [list(l) for l in labels] == [list(l) for l in raw_labels]
    np.testing.assert_allclose(probs, np.vstack(raw_probs), rtol=1e-6)


def test_lines_with_fewer_than_k_labels(lid_model):
    # fastText returns only 2 labels for this line at k=3: the top one has all the mass
    text = "最終電車に乗り遅れたので、タクシーでホテルに帰りました。"
    assert len(lid_model.model.predict([text], k=3)[0][0]) < 3
    cols = identify(pa.array([text, "The weather is lovely today."]), lid_model, LangIdOptions(top_k=3))
    assert cols["lang"].to_pylist() == ["jpn", "eng"]
    topk = cols["lang_topk"].to_pylist()
    assert len(topk[0]) < 3 and len(topk[1]) == 3 and topk[1][0]["lang"] == "eng"
    assert 0.0 < cols["lang_score"][0].as_py() <= 1.0


class _FailsOnBoom(langid.FastTextModel):
    """The real model, except that it raises on lines containing BOOM (a model fault)."""

    def __init__(self, real):
        self.__dict__.update(real.__dict__)

    def predict(self, lines, k):
        if any("BOOM" in line for line in lines):
            raise RuntimeError("native predict crashed")
        return super().predict(lines, k)


def test_model_fault_dead_letters_only_the_bad_row(lid_model):
    from xlcorpus.schemas import DOCUMENT_SCHEMA

    batch = pa.RecordBatch.from_pylist([
        {"id": str(i), "text": text, "source": "f.jsonl", "line": i + 1, "offset": 0, "meta": None}
        for i, text in enumerate(["The weather is lovely today.", "this line goes BOOM", "Das Wetter ist schön."])],
        schema=DOCUMENT_SCHEMA)
    stage = langid.LanguageId(LangIdOptions(threshold=0.0), model_path="unused")
    stage.model = _FailsOnBoom(lid_model)
    fn = StageFn(stage, setup=False)  # the model is already in place
    fn.setup()
    out = list(fn.process(batch))
    kept = [o for o in out if isinstance(o, pa.RecordBatch)]
    dead = [o.value for o in out if getattr(o, "tag", None) == DEAD_LETTER]
    assert [r.column("id")[0].as_py() for r in kept] == ["0", "2"]
    assert len(dead) == 1 and dead[0].column("id").to_pylist() == ["1"]
    assert dead[0].column("reason").to_pylist() == ["model_error"]
    assert dead[0].column("error")[0].as_py() == (
        "f.jsonl:2: id='1': field 'text': RuntimeError: native predict crashed")
    assert dead[0].column("raw").to_pylist() == [b"this line goes BOOM"]
