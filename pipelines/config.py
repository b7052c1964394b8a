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
    max_word_distance: float | None = Field(
        None, ge=0.0, lt=1.0,
        description="normalised cap: a word with no lexicon word within it counts as 1.0 (None: exact nearest)")
    max_word_edits: int | None = Field(
        None, ge=0, le=3,
        description="only lexicon words within this many edits count, else 1.0; 1 = fast mode (>= 1M tokens/s/core)")

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


class AnnotateConfig(_Strict):
    """LLM-assisted annotation: off unless enabled (and then it needs a model)."""

    enabled: bool = False
    task: str = Field("ner", description="shipped task (ner, openie, classify, freeform) or a template YAML path")
    labels: list[str] = Field(default_factory=list, description="allowed labels (empty: the template's own)")
    backend: Literal["openai", "ctranslate2"] = "openai"
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (vLLM, Ollama, ...)")
    model: str | None = Field(None, description="the server's model name, or a CTranslate2 model directory")
    api_key_env: str | None = Field(None, description="NAME of the environment variable holding the API key")
    model_id: str | None = Field(None, description="cache identity of the model; default: backend + model")
    concurrency: int = Field(8, ge=1, le=1024, description="requests in flight per worker process")
    requests_per_s: float | None = Field(None, gt=0, description="per worker process")
    tokens_per_min: float | None = Field(None, gt=0, description="per worker process")
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=100)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    tokenizer: str | None = Field(None, description="ctranslate2: SentencePiece .model (none: whitespace tokens)")
    device: str = "cpu"
    compute_type: str = "default"
    two_stage: bool = True
    n_samples: int = Field(1, ge=1, le=64)
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    seed: int | None = None
    max_tokens: int = Field(512, ge=1)
    max_repairs: int = Field(2, ge=0, le=10)
    min_confidence: float = Field(0.0, ge=0.0, le=1.0)
    use_json_schema: bool = True
    cache_dir: str | None = Field(None, description="answer cache directory (SQLite); none: no cache")
    text_column: str = Field("text", description="the column to annotate, e.g. translit_text")

    @model_validator(mode="after")
    def _usable(self):
        if self.enabled:
            if not self.model:
                raise ValueError("annotate.model is required when annotate.enabled is true")
            if self.n_samples > 1 and self.temperature <= 0:
                raise ValueError("annotate.n_samples > 1 needs temperature > 0")
            from xlcorpus.transforms.annotate import load_task

            load_task(self.task)  # a bad template is reported with the key
        return self


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
    annotate: AnnotateConfig = Field(default_factory=AnnotateConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @model_validator(mode="after")
    def _partition_needs_langid(self):
        if self.output.partition_by == "lang" and not self.langid.enabled:
            raise ValueError("output.partition_by: 'lang' needs langid.enabled: true")
        return self


# --- the fine-tuning job (xlcorpus finetune) ---------------------------------------------
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


def load_config(path: str | Path | None = None, data: dict | None = None, overrides: list[str] = (),
                model: type[_Strict] = JobConfig):
    """From a YAML file (relative input paths resolve against the file's folder) or a
    dict, with ``section.key=value`` overrides applied before validation. ``model`` is
    the job's config class (JobConfig or FinetuneConfig)."""
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
        config = model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, source)) from None
    if path is not None:
        base = Path(path).resolve().parent

        def resolve(p: str) -> str:
            return p if "://" in p or Path(p).is_absolute() else str(base / p)

        config.input.paths = [resolve(p) for p in config.input.paths]
        if isinstance(config, FinetuneConfig):
            if config.input.dataset:
                config.input.dataset = resolve(config.input.dataset)
            if config.tokenizer.model:
                config.tokenizer.model = resolve(config.tokenizer.model)
            return config
        if config.lexfilter.lexicon:
            config.lexfilter.lexicon = resolve(config.lexfilter.lexicon)
        ac = config.annotate
        if Path(ac.task).suffix:
            ac.task = resolve(ac.task)
        for key in ("cache_dir", "tokenizer"):
            if getattr(ac, key):
                setattr(ac, key, resolve(getattr(ac, key)))
        if ac.backend == "ctranslate2" and ac.model:
            ac.model = resolve(ac.model)
        config.lexfilter.compare = {k: resolve(v) for k, v in config.lexfilter.compare.items()}
    return config
