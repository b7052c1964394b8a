"""The lexical filter's options: config section ``lexfilter``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from xlcorpus.transforms.core.stage import StageOptions
from xlcorpus.transforms.stages.lexfilter.index import DEFAULT_MAX_DELETES


class LexFilterOptions(StageOptions):
    """Config section ``lexfilter``.

    The fields marked ``exclude=True`` are internal knobs (tests, benchmarks): they are
    not part of the config's dump. ``langs`` may be ISO 639-1 or -3; the stage compares
    them in 639-3.
    """

    lexicon: str | None = Field(None, description="target-language lexicon (xlcorpus lexicon build)")
    langs: list[str] = Field(default_factory=list, description="languages to filter (empty: all rows)")
    metric: Literal["levenshtein", "ngram_cosine", "ngram_out_of_place"] = "levenshtein"
    weighting: Literal["none", "length"] = "none"
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="keep rows scoring <= threshold")
    keep_fraction: float | None = Field(None, gt=0.0, le=1.0, description="or keep the closest fraction")
    compare: dict[str, str] = Field(default_factory=dict,
                                    description="language -> lexicon: distance of each to the target, in the report")
    max_word_distance: float | None = Field(
        None, ge=0.0, lt=1.0,
        description="normalised cap: a word with no lexicon word within it counts as 1.0 (None: exact nearest)")
    max_word_edits: int | None = Field(
        None, ge=0, le=3,
        description="only lexicon words within this many edits count, else 1.0; 1 = fast mode (>= 1M tokens/s/core)")
    # Internal knobs, not in the config's dump.
    lowercase: bool | None = Field(None, exclude=True, description="None: as the lexicon was built")
    fold_diacritics: bool | None = Field(None, exclude=True, description="None: as the lexicon was built")
    profile_size: int = Field(400, exclude=True, description="n-grams per profile (ngram metrics)")
    max_deletes: int = Field(DEFAULT_MAX_DELETES, exclude=True, description="NearestWordIndex deletion neighbourhood")
    word_cache_size: int = Field(200_000, exclude=True, description="per-worker memo of word distances")
    num_quantiles: int = Field(1001, exclude=True,
                               description="resolution of the keep_fraction cut (epsilon ~ 1/num_quantiles)")

    @model_validator(mode="after")
    def _one_selection(self):
        if self.enabled:
            if not self.lexicon:
                raise ValueError("lexfilter.lexicon is required when lexfilter.enabled is true")
            if (self.threshold is None) == (self.keep_fraction is None):
                raise ValueError("lexfilter needs exactly one of threshold or keep_fraction")
        return self

    def resolve_paths(self, resolve) -> None:
        if self.lexicon:
            self.lexicon = resolve(self.lexicon)
        self.compare = {k: resolve(v) for k, v in self.compare.items()}
