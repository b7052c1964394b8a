"""The fine-tuning stages' options: the finetune config's top-level keys of the same names."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from xlcorpus.transforms.core.stage import StageOptions


class FinetuneOptions(StageOptions):
    """What the stages need from the finetune config (``pipelines/finetune_config.py``
    takes these fields from here). The tokenizer is not an option: the job trains or
    copies it first and gives the stage its path."""

    task: Literal["lm", "ner"] = "lm"
    seq_len: int = Field(512, ge=2, description="lm: packed sequence length")
    max_length: int = Field(128, ge=3, description="ner: window length in pieces, with [cls] and [sep]")
    stride: int = Field(32, ge=0, description="ner: pieces two windows of one example may share")
    label_names: list[str] = Field(default_factory=list,
                                   description="ner: label names, when the input has no ClassLabel feature")
