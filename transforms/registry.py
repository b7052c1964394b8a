"""Every stage the corpus job can run, by config name, in default order.

Adding a stage: write its module under ``transforms/stages/`` (a ``Stage`` subclass
with its ``Options``) and add one line here. Entries are import paths, so listing
the stages imports nothing until a job asks for one.
"""

from __future__ import annotations

import importlib
from functools import cache

from xlcorpus.transforms.core.stage import Stage

STAGES: dict[str, str] = {
    "dedup": "xlcorpus.transforms.stages.dedup.stage:Dedup",
    "langid": "xlcorpus.transforms.stages.langid:LanguageId",
    "quality": "xlcorpus.transforms.stages.quality.stage:QualityFilter",
    "lexfilter": "xlcorpus.transforms.stages.lexfilter.stage:LexicalFilter",
    "transliterate": "xlcorpus.transforms.stages.transliterate.stage:Transliterate",
    "annotate": "xlcorpus.transforms.stages.annotate.stage:Annotate",
}


class UnknownStageError(KeyError):
    def __str__(self):
        return f"unknown stage {self.args[0]!r}; known stages: {', '.join(STAGES)}"


@cache
def stage_class(name: str) -> type[Stage]:
    """The Stage subclass registered under ``name``."""
    try:
        module, _, attr = STAGES[name].partition(":")
    except KeyError:
        raise UnknownStageError(name) from None
    cls = getattr(importlib.import_module(module), attr)
    if cls.name != name:
        raise TypeError(f"registry entry {name!r} points at stage {cls.name!r}")
    return cls


def names() -> list[str]:
    return list(STAGES)
