"""Language identification with fastText, one predict call per RecordBatch.

No Beam here: label normalisation to ISO 639-3 + ISO 15924, majority Unicode
script of a text, the cleaned copy the model sees, script-consistency correction,
the keep/reject decision, and ``LanguageId``, the stage (run in a pipeline by
``xlcorpus.transforms.core.beam.StageTransform``).
"""

from __future__ import annotations

import functools
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from xlcorpus.schemas import LANG_CANDIDATE, LANGID_FIELDS
from xlcorpus.transforms.backends.lid_model import SHA256, default_model_path, fasttext_file_problem
from xlcorpus.transforms.backends.model_cache import local_copy, model_identity
from xlcorpus.transforms.core.accounting import rejected_rows
from xlcorpus.transforms.core.models import shared_model
from xlcorpus.transforms.core.stage import Stage, StageOptions, StageResult
from xlcorpus.transforms.text.languages import invalid_language_codes, normalize_lang_code
from xlcorpus.transforms.text.scripts import NEUTRAL_SCRIPTS, majority_scripts

log = logging.getLogger(__name__)
STAGE = "langid"
NO_LANGUAGE = "zxx"  # ISO 639: no linguistic content

# --- label normalisation --------------------------------------------------------
# Script subtags that stand for several Unicode scripts.
_SCRIPT_GROUPS = {"Jpan": {"Hani", "Hira", "Kana"}, "Kore": {"Hang", "Hani"}, "Hans": {"Hani"},
                  "Hant": {"Hani"}, "Hrkt": {"Hira", "Kana"}}


@functools.cache
def normalize_label(label: str) -> tuple[str, str | None]:
    """fastText label -> (ISO 639-3, ISO 15924 script or None).

    ``__label__en`` (lid.176) -> (eng, None); ``__label__eng_Latn`` (GlotLID,
    OpenLID, NLLB LID) -> (eng, Latn); ``__label__zxx_Zxxx`` / ``und_Latn`` keep
    their special codes.
    """
    body = label.removeprefix("__label__")
    lang, _, script = body.partition("_")
    script = script.title() if len(script) == 4 and script.isalpha() else None
    return normalize_lang_code(lang), script


# Usual scripts of languages whose labels carry none (lid.176). Languages not
# listed are expected in Latin script; "zxx"/"und" are never checked.
_USUAL_SCRIPTS_TABLE = {
    "Arab": "ara arz ary acm apc ajp afb aeb arb azb bal ckb fas pes prs glk kur lrc mzn pnb pus snd uig urd",
    "Cyrl": "abk ava bak bel bua bul bxr che chv kaz kbd kir kom kpv krc lez mdf mhr mkd mon mrj myv oss "
            "rue rus sah srp tat tgk tyv udm ukr xal hbs uzb",
    "Latn": "srp hbs uzb kur kaz gom aze tat",
    "Grek": "ell grc", "Hebr": "heb yid lad", "Armn": "hye", "Geor": "kat xmf",
    "Deva": "hin mar nep npi san mai bho new gom dty bih awa mag",
    "Beng": "ben asm bpy", "Guru": "pan", "Gujr": "guj", "Orya": "ori ory", "Taml": "tam",
    "Telu": "tel", "Knda": "kan tcy", "Mlym": "mal", "Sinh": "sin", "Thai": "tha", "Laoo": "lao",
    "Khmr": "khm", "Mymr": "mya shn", "Tibt": "bod dzo", "Ethi": "amh tir tig", "Thaa": "div",
    "Syrc": "syr", "Hani": "zho cmn wuu yue lzh gan hak jpn kor", "Hira": "jpn", "Kana": "jpn",
    "Hang": "kor", "Mong": "mon", "Tfng": "zgh", "Nkoo": "nqo", "Cher": "chr", "Cans": "iku cre",
}
_USUAL_SCRIPTS: dict[str, frozenset[str]] = {}
for _script, _langs in _USUAL_SCRIPTS_TABLE.items():
    for _lang in _langs.split():
        _USUAL_SCRIPTS[_lang] = _USUAL_SCRIPTS.get(_lang, frozenset()) | {_script}


def usual_scripts(lang: str, label_script: str | None = None) -> frozenset[str] | None:
    """Scripts a language is normally written in (None: no expectation)."""
    if lang in (NO_LANGUAGE, "und", "mis", "mul"):
        return None
    if label_script:
        return frozenset(_SCRIPT_GROUPS.get(label_script, {label_script}))
    return _USUAL_SCRIPTS.get(lang, frozenset({"Latn"}))


# --- the model's view of the text -------------------------------------------------
# URLs, e-mail addresses and numbers say nothing about the language; fastText's
# predict stops at a newline and does not split on Unicode spaces such as U+00A0.
# One RE2 pass via Arrow per batch. Runs of spaces are left alone: fastText skips them.
_NOISE = r"(?:https?://|ftp://|www\.)\S+|\S+@\S+\.\w+|\pN+|[^ \P{Z}]|[\t\n\r\f\v]"


def clean_for_lid(texts: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.fill_null(texts, ""), _NOISE, " "))


# --- options and decisions ---------------------------------------------------------
class LangIdOptions(StageOptions):
    """Config section ``langid``."""

    enabled: bool = True
    model: str | None = Field(None, description="fastText model path; default: bundled lid.176.ftz")
    top_k: int = Field(3, ge=1, le=50)
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    thresholds: dict[str, float] = Field(default_factory=dict, description="per-language thresholds")
    keep: list[str] = Field(default_factory=list, description="languages to keep (empty: all)")
    label_only: bool = False
    script_consistency: bool = True

    @field_validator("thresholds")
    @classmethod
    def _in_unit_interval(cls, v: dict[str, float]):
        bad = {k: t for k, t in v.items() if not 0.0 <= t <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1], got {bad}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _threshold_languages(cls, v: dict[str, float]):
        bad = invalid_language_codes(v)
        if bad:
            raise ValueError(f"not ISO 639 language codes: {bad}")
        return v

    @field_validator("keep")
    @classmethod
    def _keep_languages(cls, v: list[str]):
        bad = invalid_language_codes(v)
        if bad:  # else every row is rejected and the dataset comes out empty
            raise ValueError(f"not ISO 639 language codes: {bad} (e.g. en, eng, sw, swa, zxx)")
        return v

    @field_validator("model")
    @classmethod
    def _a_fasttext_model(cls, v: str | None):
        problem = fasttext_file_problem(v) if v else None
        if problem:
            raise ValueError(problem)
        return v

    def normalized(self) -> LangIdOptions:
        """Language codes in the config may be ISO 639-1 or -3: compare in 639-3."""
        return self.model_copy(update={
            "thresholds": {normalize_lang_code(k): v for k, v in self.thresholds.items()},
            "keep": [normalize_lang_code(k) for k in self.keep]})


class FastTextModel:
    """A loaded fastText model plus its identity for the run report."""

    def __init__(self, path: str):
        import fasttext

        self.path = str(path)
        fasttext.FastText.eprint = lambda *a, **k: None  # silence the load-time warning
        self.model = fasttext.load_model(self.path)
        self.labels = len(self.model.get_labels())

    def predict(self, lines: list[str], k: int) -> tuple[list[list[str]], np.ndarray]:
        """Top-k labels and probabilities, shape (len(lines), k). One native call."""
        if not lines:
            return [], np.zeros((0, k), np.float32)
        # Same input as fastText's own predict(): each line ends with "\n" (the </s> token).
        # The lines come from clean_for_lid, so they hold no other newline.
        labels, probs = self.model.f.multilinePredict([t + "\n" for t in lines], k, 0.0, "replace")
        width = min(k, self.labels)
        scores = np.zeros((len(lines), width), np.float32)
        for i, p in enumerate(probs):  # a row has fewer than k labels when the top one takes all mass
            scores[i, : len(p)] = p
        # hierarchical softmax can overshoot 1 by rounding (1.00005): keep it a probability
        return labels, np.minimum(scores, 1.0)


def identify(texts: pa.Array, model: FastTextModel, opts: LangIdOptions) -> dict[str, pa.Array]:
    """The LID columns for a batch of texts (see schemas.LANGID_FIELDS)."""
    n = len(texts)
    scripts = majority_scripts(texts)
    cleaned = clean_for_lid(texts)
    has_content = pc.greater(pc.utf8_length(cleaned), 0).to_numpy(zero_copy_only=False)
    todo = np.flatnonzero(has_content)
    labels, probs = model.predict(pc.take(cleaned, pa.array(todo, pa.int64())).to_pylist(), opts.top_k)

    lang = [NO_LANGUAGE] * n
    lang_script: list[str | None] = [None] * n
    score = np.full(n, np.nan, np.float32)
    override = np.zeros(n, bool)
    script_list = scripts.to_pylist()
    cand_langs: list[str] = []
    cand_scripts: list[str | None] = []
    cand_scores: list[np.ndarray] = []
    counts = np.zeros(n, np.int32)  # fastText may return fewer than k labels for a line
    for j, (row, row_labels) in enumerate(zip(todo.tolist(), labels)):
        normalized = [normalize_label(label) for label in row_labels]
        if not normalized:
            continue
        best = _script_consistent_choice(normalized, script_list[row]) if opts.script_consistency else 0
        override[row] = best > 0
        lang[row], lang_script[row] = normalized[best]
        score[row] = probs[j, best]
        counts[row] = len(normalized)
        cand_scores.append(probs[j, : len(normalized)])
        for code, sc in normalized:
            cand_langs.append(code)
            cand_scripts.append(sc)

    topk_offsets = np.zeros(n + 1, np.int32)
    topk_offsets[1:] = np.cumsum(counts)
    candidates = pa.StructArray.from_arrays(
        [pa.array(cand_langs, pa.string()), pa.array(cand_scripts, pa.string()),
         pa.array(np.concatenate(cand_scores) if cand_scores else np.zeros(0, np.float32), pa.float32())],
        fields=list(LANG_CANDIDATE))
    topk = pa.ListArray.from_arrays(pa.array(topk_offsets), candidates, type=LANGID_FIELDS[4].type,
                                    mask=pa.array(~has_content))
    return {
        "lang": pa.array(lang, pa.string()),
        "lang_score": pa.array(score, pa.float32(), from_pandas=True),  # NaN -> null
        "lang_script": pa.array(lang_script, pa.string()),
        "script": scripts,
        "lang_topk": topk,
        "lang_script_override": pa.array(override, pa.bool_()),
    }


def _script_consistent_choice(candidates: list[tuple[str, str | None]], text_script: str) -> int:
    """Index of the first candidate whose usual script matches the text's script
    (0 when the top one does, when none does, or when the text has no script)."""
    if text_script in NEUTRAL_SCRIPTS:
        return 0
    top = usual_scripts(*candidates[0]) if candidates else None
    if top is None or text_script in top:
        return 0
    for i, (code, label_script) in enumerate(candidates[1:], start=1):
        expected = usual_scripts(code, label_script)
        if expected is not None and text_script in expected:
            return i
    return 0


def decide(texts: pa.Array, columns: dict[str, pa.Array], opts: LangIdOptions) -> list[tuple[str, dict] | None]:
    """Per row: None (keep) or (reason, detail) for rejection. Vectorised; only the
    rejected rows are visited in Python."""
    n = len(texts)
    if opts.label_only:
        return [None] * n
    lang = pc.fill_null(columns["lang"], NO_LANGUAGE)
    score = columns["lang_score"]
    empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(texts, ""))), 0)
    no_content = pc.and_(pc.equal(lang, NO_LANGUAGE), pa.scalar(NO_LANGUAGE not in opts.keep))
    not_kept = pc.invert(pc.is_in(lang, pa.array(list(opts.keep), pa.string()))) if opts.keep else \
        pa.repeat(False, n)
    if opts.thresholds:
        per_lang = pa.array([opts.thresholds.get(code, opts.threshold) for code in lang.to_pylist()], pa.float32())
    else:
        per_lang = pa.scalar(opts.threshold, pa.float32())
    low = pc.fill_null(pc.less(score, per_lang), False)
    reason = pc.case_when(
        pc.make_struct(empty, no_content, not_kept, low),
        "empty_text", "no_linguistic_content", "lid_not_kept", "lid_low_confidence")
    out: list[tuple[str, dict] | None] = [None] * n
    for i in np.flatnonzero(pc.is_valid(reason).to_numpy(zero_copy_only=False)).tolist():
        why = reason[i].as_py()
        detail: dict = {}
        if why in ("lid_not_kept", "lid_low_confidence"):
            detail = {"lang": lang[i].as_py(), "lang_score": score[i].as_py()}
            if why == "lid_low_confidence":
                detail["threshold"] = opts.thresholds.get(detail["lang"], opts.threshold)
        out[i] = (why, detail)
    return out


def annotate(batch: pa.RecordBatch, model: FastTextModel, opts: LangIdOptions
             ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """(kept rows with LID columns, rejected rows or None)."""
    columns = identify(batch.column("text"), model, opts)
    tagged = batch
    for f in LANGID_FIELDS:
        tagged = tagged.append_column(f, columns[f.name])
    decisions = decide(batch.column("text"), columns, opts)
    reject = np.array([d is not None for d in decisions], bool)
    if not reject.any():
        return tagged, None
    kept = tagged.filter(pa.array(~reject))
    rows = np.flatnonzero(reject)
    return kept, rejected_rows(batch, rows, [decisions[i][0] for i in rows], [decisions[i][1] for i in rows], STAGE)


# --- the stage ---------------------------------------------------------------------------
class LanguageId(Stage[LangIdOptions]):
    """fastText language ID: adds LANGID_FIELDS; rejects empty, low-confidence and
    not-kept rows. The model is loaded once per worker process; gs:// / s3:// /
    hdfs:// models are copied to a local cache first."""

    name = STAGE
    Options = LangIdOptions
    fields = LANGID_FIELDS

    def __init__(self, options: LangIdOptions | None = None, model_path: str | None = None):
        super().__init__(options)
        self.opts = self.options.normalized()
        self.model_path = str(model_path or self.options.model or default_model_path())
        self.model: FastTextModel | None = None

    def check(self) -> None:
        if not os.path.exists(self.model_path) and "://" not in self.model_path:
            raise FileNotFoundError(f"langid.model: {self.model_path} does not exist")

    def setup(self) -> None:
        path = self.model_path
        self.model = shared_model(f"fasttext:{path}", lambda: FastTextModel(local_copy(path)))

    def process(self, batch: pa.RecordBatch) -> StageResult:
        return StageResult(*annotate(batch, self.model, self.opts))

    def report(self) -> dict:
        identity = model_identity(self.model_path)
        return identity | {"bundled": identity.get("sha256") == SHA256}
