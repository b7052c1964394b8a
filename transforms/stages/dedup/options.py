"""The ``dedup:`` config section: text normalisation, exact and near-duplicate parts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from xlcorpus.transforms.core.stage import StageOptions


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NormalizeOptions(_Section):
    """How a text is normalised before it is hashed (exact) or shingled (MinHash).

    Defaults: Unicode NFC, case folding, every run of punctuation / symbols and of
    white space becomes one space, ends trimmed. ``"Hello,  World!"`` and ``"hello
    world"`` are then the same text.
    """

    form: Literal["NFC", "NFKC", "none"] = Field("NFC", description="Unicode normalisation form")
    casefold: bool = Field(True, description="full Unicode case folding (ß -> ss), not just lower case")
    punctuation: bool = Field(True, description="treat punctuation and symbols (\\p{P}, \\p{S}) as spaces")
    digits: bool = Field(False, description="map every digit run to 0 (dates, counters, prices)")
    whitespace: bool = Field(True, description="collapse white space runs and trim")


class ExactOptions(_Section):
    enabled: bool = Field(True, description="drop rows whose normalised text another row already has")


class MinHashOptions(_Section):
    enabled: bool = Field(False, description="drop near-duplicates (MinHash + LSH + connected components)")
    threshold: float = Field(0.8, gt=0, lt=1, description="target Jaccard similarity of shingle sets")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (signature length)")
    bands: int | None = Field(None, ge=1, description="LSH bands; null: chosen from threshold and num_perm")
    rows: int | None = Field(None, ge=1, description="rows per band; null: chosen with bands")
    word_ngram: int = Field(5, ge=1, le=32, description="words per shingle for space-separated scripts")
    char_ngram: int = Field(5, ge=1, le=64, description="characters per shingle for Han, Thai, Khmer, Lao, "
                                                        "Myanmar and Japanese kana text")
    verify: bool = Field(True, description="keep an LSH candidate pair only when its signature similarity "
                                           "reaches the threshold (removes LSH false positives)")
    rounds: int = Field(4, ge=1, le=32, description="large-star / small-star rounds of the connected-"
                                                    "components pass (clusters deeper than this stay split)")
    seed: int = Field(1, description="seed of the permutations (fixed: runs are reproducible)")

    @model_validator(mode="after")
    def _bands_and_rows(self):
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both minhash.bands and minhash.rows, or neither")
        if self.bands is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"minhash.bands * rows ({self.bands * self.rows}) exceeds num_perm ({self.num_perm})")
        return self


class DedupOptions(StageOptions):
    normalize: NormalizeOptions = Field(default_factory=NormalizeOptions)
    exact: ExactOptions = Field(default_factory=ExactOptions)
    minhash: MinHashOptions = Field(default_factory=MinHashOptions)
    shards: int = Field(16, ge=1, le=4096, description="key shards of each grouping (parallelism of the "
                                                       "shuffles; also the number of elements per batch)")

    @model_validator(mode="after")
    def _something_to_do(self):
        if self.enabled and not (self.exact.enabled or self.minhash.enabled):
            raise ValueError("dedup is enabled but both dedup.exact and dedup.minhash are off")
        return self
