"""The job configuration: YAML validated by pydantic.

Unknown keys are errors (a typo must not silently fall back to a default), and
every error names the key path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Strict):
    paths: list[str] = Field(default_factory=list, description="file paths or globs (local, gs://, s3://, ...)")
    format: Literal["auto", "jsonl", "text", "parquet"] = "auto"
    text_field: str = "text"
    id_field: str = "id"
    batch_size: int = Field(4096, ge=1, le=1_000_000)
    max_line_bytes: int = Field(1 << 20, ge=16)

    @field_validator("paths", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class LangIdConfig(_Strict):
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


class LexFilterConfig(_Strict):
    enabled: bool = False
    lexicon: str | None = Field(None, description="target-language lexicon (xlcorpus lexicon build)")
    langs: list[str] = Field(default_factory=list, description="languages to filter (empty: all rows)")
    metric: Literal["levenshtein", "ngram_cosine", "ngram_out_of_place"] = "levenshtein"
    weighting: Literal["none", "length"] = "none"
    threshold: float | None = Field(None, ge=0.0, le=1.0, description="keep rows scoring <= threshold")
    keep_fraction: float | None = Field(None, gt=0.0, le=1.0, description="or keep the closest fraction")
    compare: dict[str, str] = Field(default_factory=dict,
                                    description="language -> lexicon: distance of each to the target, in the report")

    @model_validator(mode="after")
    def _one_selection(self):
        if self.enabled:
            if not self.lexicon:
                raise ValueError("lexfilter.lexicon is required when lexfilter.enabled is true")
            if (self.threshold is None) == (self.keep_fraction is None):
                raise ValueError("lexfilter needs exactly one of threshold or keep_fraction")
        return self


class TransliterateConfig(_Strict):
    enabled: bool = False
    policies: dict[str, str] = Field(
        default_factory=lambda: {"mlt": "maltese-arabic"},
        description="language (ISO 639-1/3, or '*' for any other) -> shipped policy name or YAML path")
    spans_column: str | None = Field(None, description="list<struct<start, end, label>> column to carry over")

    @field_validator("policies")
    @classmethod
    def _known(cls, v: dict[str, str]):
        from xlcorpus.transforms.transliterate import load_policy

        for lang, policy in v.items():
            try:
                load_policy(policy)
            except (OSError, ValueError) as e:
                raise ValueError(f"{lang}: {e}") from None
        return v


class OutputConfig(_Strict):
    path: str | None = None
    splits: dict[str, float] = Field(default_factory=lambda: {"train": 0.9, "validation": 0.05, "test": 0.05})
    partition_by: Literal["lang"] | None = None
    max_rows_per_shard: int = Field(200_000, ge=1)
    overwrite: bool = False

    @field_validator("splits")
    @classmethod
    def _positive(cls, v: dict[str, float]):
        if not v or any(r < 0 for r in v.values()) or sum(v.values()) <= 0:
            raise ValueError(f"splits need non-negative ratios with a positive sum, got {v}")
        return v


class JobConfig(_Strict):
    name: str = "xlcorpus"
    input: InputConfig = Field(default_factory=InputConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    lexfilter: LexFilterConfig = Field(default_factory=LexFilterConfig)
    transliterate: TransliterateConfig = Field(default_factory=TransliterateConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _partition_needs_langid(self):
        if self.output.partition_by == "lang" and not self.langid.enabled:
            raise ValueError("output.partition_by: 'lang' needs langid.enabled: true")
        return self


class ConfigError(ValueError):
    pass


def _describe(e: ValidationError, source: str) -> str:
    lines = [f"invalid config {source}:"]
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        got = err.get("input")
        lines.append(f"  {key}: {err['msg']}" + (f" (got {got!r})" if not isinstance(got, dict) else ""))
    return "\n".join(lines)


def apply_override(data: dict, assignment: str) -> None:
    """``section.key=VALUE`` (VALUE read as YAML: ``0.6``, ``[mlt, swa]``, ``true``)."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. langid.threshold=0.6")
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {assignment!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML: {e}") from None


def load_config(path: str | Path | None = None, data: dict | None = None, overrides: list[str] = ()) -> JobConfig:
    """From a YAML file (relative input paths resolve against the file's folder) or a
    dict, with ``section.key=value`` overrides applied before validation."""
    source = str(path) if path else "<dict>"
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"invalid config {source}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        config = JobConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None
    if path is not None:
        base = Path(path).resolve().parent

        def resolve(p: str) -> str:
            return p if "://" in p or Path(p).is_absolute() else str(base / p)

        config.input.paths = [resolve(p) for p in config.input.paths]
        if config.lexfilter.lexicon:
            config.lexfilter.lexicon = resolve(config.lexfilter.lexicon)
        config.lexfilter.compare = {k: resolve(v) for k, v in config.lexfilter.compare.items()}
    return config
