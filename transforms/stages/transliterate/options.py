"""Transliteration options: config section ``transliterate``."""

from __future__ import annotations

from pydantic import Field, field_validator

from xlcorpus.transforms.core.stage import StageOptions
from xlcorpus.transforms.stages.transliterate.policies import load_policy


class TransliterateOptions(StageOptions):
    """Config section ``transliterate``. Language codes stay as configured here (the
    stage compares them in ISO 639-3)."""

    policies: dict[str, str] = Field(
        default_factory=lambda: {"mlt": "maltese-arabic"},
        description="language (ISO 639-1/3, or '*' for any other) -> shipped policy name or YAML path")
    spans_column: str | None = Field(None, description="list<struct<start, end, label>> column to carry over")

    @field_validator("policies")
    @classmethod
    def _known(cls, v: dict[str, str]):
        for lang, policy in v.items():
            try:
                load_policy(policy)
            except (OSError, ValueError) as e:
                raise ValueError(f"{lang}: {e}") from None
        return v
