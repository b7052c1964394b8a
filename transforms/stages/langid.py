"""Language identification with fastText, one predict call per RecordBatch.

No Beam here: label normalisation to ISO 639-3 + ISO 15924, majority Unicode
script of a text, the cleaned copy the model sees, script-consistency correction,
the keep/reject decision, and ``LanguageId``, the stage (run in a pipeline by
``xlcorpus.transforms.core.beam.StageTransform``).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from xlcorpus.schemas import LANG_CANDIDATE, LANGID_FIELDS
from xlcorpus.transforms.backends.lid_model import SHA256, default_model_path, fasttext_file_problem, sha256_of
from xlcorpus.transforms.backends.model_cache import local_copy, model_identity
from xlcorpus.transforms.core.accounting import append_columns, split_rows
from xlcorpus.transforms.core.models import shared_model
from xlcorpus.transforms.core.resources import shipped_dir
from xlcorpus.transforms.core.stage import Stage, StageOptions, StageResult
from xlcorpus.transforms.text.languages import invalid_language_codes, normalize_lang_code
from xlcorpus.transforms.text.language_scripts import usual_scripts
from xlcorpus.transforms.text.scripts import NEUTRAL_SCRIPTS, script_shares, writing_systems

log = logging.getLogger(__name__)
STAGE = "langid"
NO_LANGUAGE = "zxx"  # ISO 639: no linguistic content

# --- label normalisation --------------------------------------------------------
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
    script_override_min_ratio: float = Field(
        0.1, ge=0.0, le=1.0,
        description="switch to a lower candidate only if its probability is >= this share of the top one's")
    calibrated_thresholds: bool = Field(
        True, description="with the bundled lid.176 model: per-language thresholds below `threshold` where the "
                          "model is under-confident on correct text (shipped calibration; `thresholds` win)")
    script_present_share: float = Field(
        0.1, ge=0.0, le=1.0,
        description="the top candidate's script counts as present in a text from this share of its letters")

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


CALIBRATION = "lid176-calibration/thresholds.json"  # under the shipped models folder


@functools.cache
def calibrated_thresholds(model_sha256: str) -> dict[str, float]:
    """The shipped per-language thresholds for the model with this SHA-256 (empty
    for any other model: a calibration holds for the model it was measured on)."""
    data = json.loads((shipped_dir("models") / CALIBRATION).read_text(encoding="utf-8"))
    if data["model_sha256"] != model_sha256:
        return {}
    return {lang: entry["threshold"] for lang, entry in data["languages"].items()}


def effective_options(options: LangIdOptions, model_path: str) -> LangIdOptions:
    """The options a run uses: language codes in ISO 639-3 and, when
    ``calibrated_thresholds`` is on and the model is the bundled one, the calibrated
    per-language thresholds (never above ``threshold``; ``thresholds`` win)."""
    opts = options.normalized()
    if not opts.calibrated_thresholds or "://" in model_path or not os.path.exists(model_path):
        return opts
    calibrated = {lang: min(t, opts.threshold) for lang, t in calibrated_thresholds(sha256_of(model_path)).items()}
    return opts.model_copy(update={"thresholds": {**calibrated, **opts.thresholds}})


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
        flat = np.concatenate(probs).astype(np.float32, copy=False)
        if len(flat) == len(lines) * width:  # every row has `width` labels
            scores = flat.reshape(len(lines), width)
        else:  # a row has fewer than k labels when the top one takes all mass: pad with zeros
            counts = np.fromiter(map(len, probs), np.int64, count=len(probs))
            scores = np.zeros((len(lines), width), np.float32)
            scores[np.arange(width) < counts[:, None]] = flat
        # hierarchical softmax can overshoot 1 by rounding (1.00005): keep it a probability
        return labels, np.minimum(scores, 1.0)


def identify(texts: pa.Array, model: FastTextModel, opts: LangIdOptions) -> dict[str, pa.Array]:
    """The LID columns for a batch of texts (see schemas.LANGID_FIELDS).

    Per distinct label and per distinct (top label, text script) pair, not per row:
    the few rows whose top candidate's script is not the text's go through
    ``script_choice`` one by one."""
    n = len(texts)
    cleaned = clean_for_lid(texts)
    scripts, script_counts = writing_systems(cleaned)  # URLs and e-mail addresses do not vote
    has_content = pc.greater(pc.utf8_length(cleaned), 0).to_numpy(zero_copy_only=False)
    todo = np.flatnonzero(has_content)
    labels, probs = model.predict(pc.take(cleaned, pa.array(todo, pa.int64())).to_pylist(), opts.top_k)

    # candidates flat, row by row; each distinct label normalised once
    counts = np.zeros(n, np.int32)  # fastText may return fewer than k labels for a line
    counts[todo] = np.fromiter(map(len, labels), np.int32, count=len(todo))
    flat = pa.array(itertools.chain.from_iterable(labels), pa.string()).dictionary_encode()
    distinct = [normalize_label(label) for label in flat.dictionary.to_pylist()]
    label_ids = flat.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    label_langs = np.array([code for code, _ in distinct], dtype=object)
    label_scripts = np.array([sc for _, sc in distinct], dtype=object)
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=starts[1:])
    answered = np.flatnonzero(counts > 0)
    keep = np.arange(probs.shape[1]) < counts[todo][:, None]
    cand_scores = probs[keep]

    # the reported candidate: the top one unless script_choice says otherwise
    best = np.zeros(n, np.int64)
    mismatch = np.zeros(n, bool)
    script_codes = scripts.dictionary_encode()
    script_names = script_codes.dictionary.to_pylist()
    script_ids = script_codes.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pair = label_ids[starts[answered]] * len(script_names) + script_ids[answered]
    pairs, pair_of_row = np.unique(pair, return_inverse=True)
    consistent = np.array([_script_agrees(distinct[int(p) // len(script_names)],
                                          script_names[int(p) % len(script_names)]) for p in pairs], bool)
    row_in_todo = np.cumsum(has_content) - 1
    for row in answered[~consistent[pair_of_row]].tolist():
        first, last = starts[row], starts[row + 1]
        candidates = [distinct[i] for i in label_ids[first:last].tolist()]
        best[row], mismatch[row] = script_choice(candidates, probs[row_in_todo[row]], script_names[script_ids[row]],
                                                 script_counts, row, opts)
    chosen = label_ids[starts[answered] + best[answered]]
    lang = np.full(n, NO_LANGUAGE, dtype=object)
    lang[answered] = label_langs[chosen]
    lang_script = np.full(n, None, dtype=object)
    lang_script[answered] = label_scripts[chosen]
    score = np.full(n, np.nan, np.float32)
    score[answered] = probs[row_in_todo[answered], best[answered]]

    candidates = pa.StructArray.from_arrays(
        [pa.array(label_langs[label_ids], pa.string()), pa.array(label_scripts[label_ids], pa.string()),
         pa.array(cand_scores, pa.float32())],
        fields=list(LANG_CANDIDATE))
    topk = pa.ListArray.from_arrays(pa.array(starts.astype(np.int32)), candidates, type=LANGID_FIELDS[4].type,
                                    mask=pa.array(~has_content))
    return {
        "lang": pa.array(lang, pa.string()),
        "lang_score": pa.array(score, pa.float32(), from_pandas=True),  # NaN -> null
        "lang_script": pa.array(lang_script, pa.string()),
        "script": scripts,
        "lang_topk": topk,
        "lang_script_override": pa.array(best > 0, pa.bool_()),
        "lang_script_mismatch": pa.array(mismatch, pa.bool_()),
    }


def _script_agrees(top: tuple[str, str | None], text_script: str) -> bool:
    """True when ``script_choice`` keeps the top candidate without looking further:
    the text has no script, the language has no usual script, or the text's is one."""
    if text_script in NEUTRAL_SCRIPTS:
        return True
    usual = usual_scripts(*top)
    return usual is None or text_script in usual


def script_choice(candidates: list[tuple[str, str | None]], probs: np.ndarray, text_script: str,
                  counts: np.ndarray, row: int, opts: LangIdOptions) -> tuple[int, bool]:
    """(index of the candidate to report, whether the reported language's usual script
    disagrees with the text's).

    The model's answer stands unless its language's script is really absent from the
    text (less than ``script_present_share`` of the letters) and a lower candidate
    whose script is the text's has a meaningful probability (at least
    ``script_override_min_ratio`` of the top one's). A disagreement that does not
    meet both is recorded, not acted on.
    """
    if text_script in NEUTRAL_SCRIPTS or not candidates:
        return 0, False
    top = usual_scripts(*candidates[0])
    if top is None or text_script in top:
        return 0, False
    if not opts.script_consistency or script_shares(counts, row, top) >= opts.script_present_share:
        return 0, True
    floor = opts.script_override_min_ratio * float(probs[0])
    for i, (code, label_script) in enumerate(candidates[1:], start=1):
        expected = usual_scripts(code, label_script)
        if expected is not None and text_script in expected and float(probs[i]) >= floor:
            return i, False
    return 0, True


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
    if opts.thresholds:  # one lookup per distinct language
        codes = lang.dictionary_encode()
        per_code = pa.array([opts.thresholds.get(c, opts.threshold) for c in codes.dictionary.to_pylist()],
                            pa.float32())
        per_lang = per_code.take(codes.indices)
    else:
        per_lang = pa.scalar(opts.threshold, pa.float32())
    low = pc.fill_null(pc.less(score, per_lang), False)
    reason = pc.case_when(
        pc.make_struct(empty, no_content, not_kept, low),
        "empty_text", "no_linguistic_content", "lid_not_kept", "lid_low_confidence")
    out: list[tuple[str, dict] | None] = [None] * n
    rows = pa.array(np.flatnonzero(pc.is_valid(reason).to_numpy(zero_copy_only=False)), pa.int64())
    for i, why, code, p in zip(rows.to_pylist(), reason.take(rows).to_pylist(), lang.take(rows).to_pylist(),
                               score.take(rows).to_pylist()):
        detail: dict = {}
        if why in ("lid_not_kept", "lid_low_confidence"):
            detail = {"lang": code, "lang_score": p}
            if why == "lid_low_confidence":
                detail["threshold"] = opts.thresholds.get(code, opts.threshold)
        out[i] = (why, detail)
    return out


def annotate(batch: pa.RecordBatch, model: FastTextModel, opts: LangIdOptions
             ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """(kept rows with LID columns, rejected rows or None)."""
    columns = identify(batch.column("text"), model, opts)
    tagged = append_columns(batch, LANGID_FIELDS, columns)
    return split_rows(batch, tagged, decide(batch.column("text"), columns, opts), STAGE)


LOW_CONFIDENCE_STAT = "low_confidence:"  # + language: rows rejected under the threshold


def low_confidence_counts(rejected: pa.RecordBatch | None) -> dict[str, int]:
    """Rows rejected as lid_low_confidence, per language (from their ``detail``)."""
    if rejected is None or not rejected.num_rows:
        return {}
    low = rejected.filter(pc.equal(rejected.column("reason"), "lid_low_confidence"))
    out: dict[str, int] = {}
    for detail in low.column("detail").to_pylist():
        lang = json.loads(detail)["lang"]
        out[LOW_CONFIDENCE_STAT + lang] = out.get(LOW_CONFIDENCE_STAT + lang, 0) + 1
    return out


# --- the stage ---------------------------------------------------------------------------
class LanguageId(Stage[LangIdOptions]):
    """fastText language ID: adds LANGID_FIELDS; rejects empty, low-confidence and
    not-kept rows. The model is loaded once per worker process; gs:// / s3:// /
    hdfs:// models are copied to a local cache first."""

    name = STAGE
    Options = LangIdOptions
    fields = LANGID_FIELDS
    report_counters = True

    def __init__(self, options: LangIdOptions | None = None, model_path: str | None = None):
        super().__init__(options)
        self.model_path = str(model_path or self.options.model or default_model_path())
        self.opts = effective_options(self.options, self.model_path)
        self.model: FastTextModel | None = None

    def check(self) -> None:
        if not os.path.exists(self.model_path) and "://" not in self.model_path:
            raise FileNotFoundError(f"langid.model: {self.model_path} does not exist")

    def setup(self) -> None:
        path = self.model_path
        self.model = shared_model(f"fasttext:{path}", lambda: FastTextModel(local_copy(path)))

    def process(self, batch: pa.RecordBatch) -> StageResult:
        kept, rejected = annotate(batch, self.model, self.opts)
        return StageResult(kept, rejected, stats=low_confidence_counts(rejected))

    def counters_report(self, counters: dict[str, int]) -> dict:
        """The report's ``langid`` section: which languages lost most rows to the threshold."""
        lost = {k.removeprefix(LOW_CONFIDENCE_STAT): v for k, v in counters.items()
                if k.startswith(LOW_CONFIDENCE_STAT)}
        return {"low_confidence_by_language": dict(sorted(lost.items(), key=lambda kv: (-kv[1], kv[0])))}

    def report(self) -> dict:
        identity = model_identity(self.model_path)
        return identity | {"bundled": identity.get("sha256") == SHA256}
