"""The fine-tuning job's configuration (``xlcorpus finetune``): YAML validated by pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model, field_validator, model_validator

from xlcorpus.pipelines.config import Strict as _Strict
from xlcorpus.transforms.stages.finetune.options import FinetuneOptions


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


class _FinetuneBase(_Strict):
    """The finetune job; its fields are made by ``_finetune_config`` below."""

    @model_validator(mode="after")
    def _consistent(self):
        if self.task == "ner" and self.paths_only:
            raise ValueError("task ner reads a dataset with tokens and ner_tags: set input.dataset")
        if self.task == "ner" and not self.stride < self.max_length - 2:
            raise ValueError(f"stride must be < max_length - 2 = {self.max_length - 2}")
        return self

    def stage_options(self, **update) -> FinetuneOptions:
        """This config's ``FinetuneOptions`` (``update``: values the job resolved, e.g. label names)."""
        return FinetuneOptions(**{k: getattr(self, k) for k in FinetuneOptions.model_fields if k != "enabled"}
                               | update)

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


def _finetune_config() -> type[_FinetuneBase]:
    """The config in its documented key order, the stages' keys taken from their options
    (declared once, in ``FinetuneOptions``)."""
    stage = {name: (f.annotation, f) for name, f in FinetuneOptions.model_fields.items() if name != "enabled"}
    return create_model(
        "FinetuneConfig", __base__=_FinetuneBase, __module__=__name__,
        name=(str, "xlcorpus-finetune"),
        task=stage.pop("task"),
        input=(FinetuneInputConfig, Field(default_factory=FinetuneInputConfig)),
        tokenizer=(TokenizerConfig, Field(default_factory=TokenizerConfig)),
        **stage,
        mix=(MixConfig, Field(default_factory=MixConfig)),
        output=(FinetuneOutputConfig, Field(default_factory=FinetuneOutputConfig)))


FinetuneConfig = _finetune_config()
