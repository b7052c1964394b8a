"""The quality stage's options: config section ``quality``.

Each rule is a section of its own (``quality.word_count.min``), with ``enabled`` and
its thresholds. ``by_script`` (ISO 15924) and ``by_language`` (ISO 639) override
rules field by field, e.g. ``by_language: {zho: {mean_word_length: {enabled: false}}}``.

Thresholds start from the published ones (Gopher, Rae et al. 2021; FineWeb, Penedo
et al. 2024) but this corpus is mostly one sentence per row, often in languages those
filters were never tuned on; where a default differs, the comment says why.
"""

from __future__ import annotations

from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xlcorpus.transforms.core.stage import StageOptions
from xlcorpus.transforms.text.languages import invalid_language_codes, normalize_lang_code


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True


class WordCount(Rule):
    # Gopher keeps 50..100000 words: 50 would delete every one-sentence row (the demo's
    # are 6-16 words). 2 drops one-word rows (headers, "MALTA", numbers) and keeps
    # two-word sentences: 3 cost 10% of the MLRS Maltese sentences ("Kollox sew.", "X' ġara?").
    min: int = Field(2, ge=1, description="fewer words (or chars) rejected; >= 1, so empty text always is")
    max: int = Field(100_000, ge=1)
    unit: Literal["words", "chars"] = Field(
        "words", description="words: whitespace tokens with a non-punctuation character; chars: letters, marks, "
                             "digits (for scripts written without spaces)")

    @model_validator(mode="after")
    def _ordered(self):
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max})")
        return self


class MeanWordLength(Rule):
    # Gopher: 3..10 characters. Yoruba sentences of monosyllables average 2.5 letters
    # ("Ó ń lọ sí ilé": 1.8) and agglutinative words (Tamil, Finnish, Georgian) run past
    # 10 in ordinary sentences; 1.5..20 still catches spaced-out letters ("H e l l o": 1.0)
    # and run-together tokens (URLs, base64).
    min: float = Field(1.5, ge=0.0)
    max: float = Field(20.0, gt=0.0)
    min_words: int = Field(3, ge=1, description="not measured on fewer words (an average of 1-2 says nothing)")


class AlphaWords(Rule):
    # Gopher: 80% of words with a letter. A 10-word sentence with a date and a price
    # ("On 12 May 2024 tickets cost 25 euros") has 3 of 8 words without one; 0.6 keeps
    # such sentences and still rejects tables, logs and number lists.
    min: float = Field(0.6, ge=0.0, le=1.0)


class SymbolWordRatio(Rule):
    # Gopher: '#' and ellipses per word > 0.1. One ellipsis in a 9-word sentence is
    # already 0.11, so a single symbol never rejects (Gopher's 50-word documents could not
    # reach 0.1 with one either).
    max: float = Field(0.1, ge=0.0)
    min_symbols: int = Field(2, ge=1, description="not applied below this many '#' / ellipses")


class StopWords(Rule):
    # Gopher: at least 2 of its 8 English words, on documents of >= 50 words. Short English
    # sentences often hold one or none ("Tomatoes were cheaper than I expected."), so the
    # requirement grows with length: min(min, words // words_per_stop_word).
    words: list[str] = Field(default_factory=list, description="the stop-word list (empty: rule not applied)")
    min: int = Field(2, ge=1)
    words_per_stop_word: int = Field(25, ge=1, description="one stop word required per this many words")

    @field_validator("words")
    @classmethod
    def _lower(cls, v: list[str]):
        return sorted({w.strip().lower() for w in v if w.strip()})


class LineRule(Rule):
    # Line statistics of a one-line row are 0 or 1: measured only on documents with lines.
    min_lines: int = Field(3, ge=1, description="not applied to texts with fewer non-blank lines")


class BulletLines(LineRule):
    max: float = Field(0.9, ge=0.0, le=1.0)  # Gopher


class EllipsisLines(LineRule):
    max: float = Field(0.3, ge=0.0, le=1.0)  # Gopher


class LinesEndPunctuation(LineRule):
    # FineWeb's line_punct_thr: reject when fewer than 12% of lines end in terminal punctuation.
    min: float = Field(0.12, ge=0.0, le=1.0)


class DuplicateLines(LineRule):
    max: float = Field(0.3, ge=0.0, le=1.0)  # Gopher


class DuplicateLineChars(LineRule):
    max: float = Field(0.2, ge=0.0, le=1.0)  # Gopher


class NgramRule(Rule):
    # Gopher's n-gram fractions are calibrated on documents of >= 50 words; on one
    # sentence a twice-used "of the" is already 20% of the characters. Below 50 the top
    # n-gram rule rejected real sentences (a 15-word Yoruba one with "máa ń" twice, a
    # 42-word Maltese list of names); on 44 real Maltese paragraphs of 60+ words, none.
    max: dict[int, float] = Field(default_factory=dict)
    min_words: int = Field(50, ge=1, description="not applied to texts with fewer words")

    @field_validator("max")
    @classmethod
    def _fractions(cls, v: dict[int, float]):
        bad = {n: f for n, f in v.items() if n < 1 or not 0.0 <= f <= 1.0}
        if bad:
            raise ValueError(f"n must be >= 1 and fractions in [0, 1], got {bad}")
        return dict(sorted(v.items()))


class TopNgramFraction(NgramRule):
    max: dict[int, float] = Field(default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16})  # Gopher


class DuplicateNgramFraction(NgramRule):
    max: dict[int, float] = Field(  # Gopher
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10})


# The fixed evaluation order: cheap, vectorised rules first; the first failing rule decides.
RULES: dict[str, type[Rule]] = {
    "word_count": WordCount, "mean_word_length": MeanWordLength, "alpha_words": AlphaWords,
    "symbol_word_ratio": SymbolWordRatio, "stop_words": StopWords, "bullet_lines": BulletLines,
    "ellipsis_lines": EllipsisLines, "lines_end_punctuation": LinesEndPunctuation,
    "duplicate_lines": DuplicateLines, "duplicate_line_chars": DuplicateLineChars,
    "top_ngram_fraction": TopNgramFraction, "duplicate_ngram_fraction": DuplicateNgramFraction,
}
RULE_ORDER = tuple(RULES)

# Scripts written without spaces between words: a whitespace token is a phrase, so
# counts are in characters and word-length / word n-gram rules do not apply (line
# repetition rules still do). Thai and Lao do not end sentences with a full stop.
def _no_spaces(min_chars: int, full_stop: bool = True) -> dict[str, dict[str, Any]]:
    patch = {"word_count": {"unit": "chars", "min": min_chars, "max": 300_000},
             "mean_word_length": {"enabled": False},
             "top_ngram_fraction": {"enabled": False}, "duplicate_ngram_fraction": {"enabled": False}}
    return patch if full_stop else patch | {"lines_end_punctuation": {"enabled": False}}


# About 2 words, as for spaced scripts: a Han character is about a morpheme, a kana
# about a syllable; a Thai, Khmer, Lao, Burmese or Tibetan word is 3-4 code points
# (consonants plus vowel signs: "ขอบคุณ", thank you, is 6).
SCRIPT_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "Hani": _no_spaces(3), "Jpan": _no_spaces(4), "Khmr": _no_spaces(6), "Mymr": _no_spaces(6),
    "Tibt": _no_spaces(6), "Thai": _no_spaces(6, full_stop=False), "Laoo": _no_spaces(6, full_stop=False),
}
GOPHER_STOP_WORDS = ["the", "be", "to", "of", "and", "that", "have", "with"]
LANGUAGE_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "eng": {"stop_words": {"words": GOPHER_STOP_WORDS}},  # the only published list; no others invented
}

Overrides = dict[str, dict[str, dict[str, Any]]]
_SCRIPT_CODE = regex.compile(r"^[A-Z][a-z]{3}$")


def merge(base: dict, patch: dict) -> dict:
    """``base`` with ``patch`` applied: dicts merge key by key (n-gram thresholds), the rest
    replaces. Keys compare as strings: a YAML ``3:`` and a JSON ``"3":`` are the same n."""
    out = {str(k): v for k, v in base.items()}
    for k, v in patch.items():
        k = str(k)
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class QualityOptions(StageOptions):
    """Config section ``quality``: one sub-section per rule, plus overrides.

    A row's rules are the defaults, then the shipped script and language defaults
    (``SCRIPT_DEFAULTS``, ``LANGUAGE_DEFAULTS``), then ``by_script``, then ``by_language``."""

    word_count: WordCount = Field(default_factory=WordCount)
    mean_word_length: MeanWordLength = Field(default_factory=MeanWordLength)
    alpha_words: AlphaWords = Field(default_factory=AlphaWords)
    symbol_word_ratio: SymbolWordRatio = Field(default_factory=SymbolWordRatio)
    stop_words: StopWords = Field(default_factory=StopWords)
    bullet_lines: BulletLines = Field(default_factory=BulletLines)
    ellipsis_lines: EllipsisLines = Field(default_factory=EllipsisLines)
    lines_end_punctuation: LinesEndPunctuation = Field(default_factory=LinesEndPunctuation)
    duplicate_lines: DuplicateLines = Field(default_factory=DuplicateLines)
    duplicate_line_chars: DuplicateLineChars = Field(default_factory=DuplicateLineChars)
    top_ngram_fraction: TopNgramFraction = Field(default_factory=TopNgramFraction)
    duplicate_ngram_fraction: DuplicateNgramFraction = Field(default_factory=DuplicateNgramFraction)
    by_script: Overrides = Field(default_factory=dict, description="ISO 15924 script -> rule -> fields")
    by_language: Overrides = Field(default_factory=dict, description="ISO 639 language -> rule -> fields")

    @field_validator("by_script")
    @classmethod
    def _scripts(cls, v: Overrides):
        bad = [s for s in v if not _SCRIPT_CODE.match(s.title())]
        if bad:
            raise ValueError(f"not ISO 15924 script codes: {bad} (e.g. Hani, Jpan, Thai, Latn)")
        return {s.title(): _checked(p, s) for s, p in v.items()}

    @field_validator("by_language")
    @classmethod
    def _languages(cls, v: Overrides):
        bad = invalid_language_codes(v)
        if bad:
            raise ValueError(f"not ISO 639 language codes: {bad} (e.g. zh, zho, sw, swa)")
        return {normalize_lang_code(k): _checked(p, k) for k, p in v.items()}

    @model_validator(mode="after")
    def _overrides_combine(self):
        """Every override must give valid rules on top of the configured ones (e.g. a
        language's word_count.min above the top-level max fails here, not on a worker)."""
        langs = {None, *LANGUAGE_DEFAULTS, *self.by_language}
        for script in {None, *SCRIPT_DEFAULTS, *self.by_script}:
            for lang in langs:
                try:
                    self.resolve(lang, script)
                except ValidationError as e:
                    raise ValueError(f"overrides for language {lang} / script {script}: {first_error(e)}") from None
        return self

    def rules(self) -> dict[str, dict]:
        """The top-level rule sections as JSON values (n-gram sizes as string keys)."""
        return {name: getattr(self, name).model_dump(mode="json") for name in RULE_ORDER}

    def resolve(self, lang: str | None, script: str | None) -> dict[str, Rule]:
        """The rules that apply to a row of ``lang`` written in ``script`` (the stage
        memoises this per language and script)."""
        rules = self.rules()
        for kind, code, patch in self.overrides():
            if code == (script if kind == "by_script" else lang):
                for name, fields in patch.items():
                    rules[name] = merge(rules[name], fields)
        return {name: RULES[name].model_validate(fields) for name, fields in rules.items()}

    def overrides(self) -> list[tuple[str, str, Overrides]]:
        """(kind, code, patch) in the order they apply (shipped, then configured)."""
        return ([("by_script", s, p) for s, p in SCRIPT_DEFAULTS.items()]
                + [("by_language", k, p) for k, p in LANGUAGE_DEFAULTS.items()]
                + [("by_script", s, p) for s, p in self.by_script.items()]
                + [("by_language", k, p) for k, p in self.by_language.items()])


def _checked(patch: dict, code: str) -> dict:
    """A per-language / per-script patch whose rules exist and whose fields validate."""
    if not isinstance(patch, dict):
        raise ValueError(f"{code}: expected rule -> fields, got {patch!r}")
    for name, fields in patch.items():
        if name not in RULES:
            raise ValueError(f"{code}: unknown rule {name!r}; rules: {', '.join(RULE_ORDER)}")
        if not isinstance(fields, dict):
            raise ValueError(f"{code}.{name}: expected fields, got {fields!r}")
        try:
            RULES[name].model_validate(merge(RULES[name]().model_dump(), fields))
        except ValidationError as e:
            raise ValueError(f"{code}.{name}: {first_error(e)}") from None
    return patch



def first_error(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]
