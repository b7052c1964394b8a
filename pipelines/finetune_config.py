"""The fine-tuning job's configuration (``xlcorpus finetune``): YAML validated by pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from xlcorpus.pipelines.config import Strict as _Strict


class FinetuneInputConfig(_Strict):
    dataset: str | None = Field(None, description="a dataset directory (xlcorpus output or any save_to_disk)")
    paths: list[str] = Field(default_factory=list, description="or raw files/globs (task lm only)")
    format: Literal["auto", "jsonl", "text", "parquet"] = "auto"
    text_field: str = "text"
    lang_field: str = "lang"
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05},
                                     description="split ratios for raw files (a dataset keeps its own splits)")
    batch_size: int = Field(1024, ge=1, le=1_000_000)

    @field_validator("paths", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_source(self):
        if self.dataset and self.paths:
            raise ValueError("give input.dataset or input.paths, not both")
        return self


class TokenizerConfig(_Strict):
    model: str | None = Field(None, description="SentencePiece .model; default: train one on the input")
    vocab_size: int = Field(8000, ge=8)
    model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"
    character_coverage: float = Field(0.9995, gt=0.0, le=1.0)
    sample_lines: int = Field(1_000_000, ge=1, description="seeded sample of the input to train on")
    seed: int = 0


class MixConfig(_Strict):
    enabled: bool = False
    temperature: float | None = Field(None, ge=0.0, description="alpha in p ~ n^alpha (XLM-R: 0.3)")
    ratios: dict[str, float] = Field(default_factory=dict, description="or explicit ratios, e.g. {eng: 9, zdj: 1}")
    total: int | None = Field(None, ge=0, description="rows after mixing (default: as many as before)")
    splits: list[str] = Field(default_factory=lambda: ["train"], description="splits to re-mix; others stay")
    seed: int = 0

    @model_validator(mode="after")
    def _one_rule(self):
        if self.enabled and (self.temperature is None) == (not self.ratios):
            raise ValueError("mix needs exactly one of temperature or ratios")
        return self


class FinetuneOutputConfig(_Strict):
    path: str | None = None
    max_rows_per_shard: int = Field(100_000, ge=1)
    overwrite: bool = False


class FinetuneConfig(_Strict):
    name: str = "xlcorpus-finetune"
    task: Literal["lm", "ner"] = "lm"
    input: FinetuneInputConfig = Field(default_factory=FinetuneInputConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    seq_len: int = Field(512, ge=2, description="lm: packed sequence length")
    max_length: int = Field(128, ge=3, description="ner: window length in pieces, with [cls] and [sep]")
    stride: int = Field(32, ge=0, description="ner: pieces two windows of one example may share")
    label_names: list[str] = Field(default_factory=list,
                                   description="ner: label names, when the input has no ClassLabel feature")
    mix: MixConfig = Field(default_factory=MixConfig)
    output: FinetuneOutputConfig = Field(default_factory=FinetuneOutputConfig)

    @model_validator(mode="after")
    def _consistent(self):
        if self.task == "ner" and self.paths_only:
            raise ValueError("task ner reads a dataset with tokens and ner_tags: set input.dataset")
        if self.task == "ner" and not self.stride < self.max_length - 2:
            raise ValueError(f"stride must be < max_length - 2 = {self.max_length - 2}")
        return self

    @property
    def paths_only(self) -> bool:
        return bool(self.input.paths) and not self.input.dataset

    def resolve_paths(self, resolve) -> None:
        """Relative paths in a config file resolve against the file's folder."""
        self.input.paths = [resolve(p) for p in self.input.paths]
        if self.input.dataset:
            self.input.dataset = resolve(self.input.dataset)
        if self.tokenizer.model:
            self.tokenizer.model = resolve(self.tokenizer.model)
