"""LLM annotation options (config section ``annotate``) and the stage's configuration error."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from xlcorpus.transforms.core.stage import StageOptions


class AnnotateConfigError(ValueError):
    """A configuration mistake: fails the run instead of dead-lettering every row."""


class AnnotateOptions(StageOptions):
    """Config section ``annotate``: LLM-assisted annotation, off unless enabled (and then it needs a model)."""

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
            from xlcorpus.transforms.stages.annotate.tasks import load_task

            load_task(self.task)  # a bad template is reported with the key
        return self

    def require_usable(self) -> None:
        """What the stage needs whether or not ``enabled`` is set (tests and benchmarks
        build options directly); pydantic has checked the ranges already."""
        if not self.model:
            raise AnnotateConfigError("annotate.model is required (a model name, or a CTranslate2 model directory)")
        if self.n_samples > 1 and self.temperature <= 0:
            raise AnnotateConfigError("annotate.n_samples > 1 needs temperature > 0: greedy samples all agree")

    def resolve_paths(self, resolve) -> None:
        from pathlib import Path

        if Path(self.task).suffix:
            self.task = resolve(self.task)
        for key in ("cache_dir", "tokenizer"):
            if getattr(self, key):
                setattr(self, key, resolve(getattr(self, key)))
        if self.backend == "ctranslate2" and self.model:
            self.model = resolve(self.model)
