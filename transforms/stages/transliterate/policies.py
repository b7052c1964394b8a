"""Transliteration policies: how words are labelled (script or origin) and what each
label's action is; shipped ones by name (``maltese-arabic``) or YAML files."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from xlcorpus.transforms.backends.model_cache import local_copy
from xlcorpus.transforms.core.resources import shipped_dir, shipped_names, shipped_or_path

ACTIONS = ("keep", "romanize", "fold_diacritics")
ANY_LANGUAGE = "*"


@dataclass(frozen=True)
class Policy:
    name: str
    labeler: str  # "script" | "etymology"
    actions: Mapping[str, str]
    default: str = "keep"
    model: str | None = None  # origin classifier (labeler: etymology)

    def __post_init__(self):
        if self.labeler not in ("script", "etymology"):
            raise ValueError(f"policy {self.name}: labeler must be 'script' or 'etymology', got {self.labeler!r}")
        if self.labeler == "etymology" and not self.model:
            raise ValueError(f"policy {self.name}: labeler 'etymology' needs a model")
        for label, action in {**self.actions, "default": self.default}.items():
            if action not in ACTIONS and not action.startswith("transliterate:"):
                raise ValueError(f"policy {self.name}: actions.{label}: expected one of {ACTIONS} or "
                                 f"'transliterate:<table>', got {action!r}")

    def action_for(self, label: str) -> str:
        return self.actions.get(label, self.default)


def shipped_policies() -> list[str]:
    return shipped_names("policies")


@functools.cache
def load_policy(name_or_path: str) -> Policy:
    """A shipped policy by name (``maltese-arabic``, ``romanize-non-latin``) or a YAML path."""
    path = shipped_or_path("policies", name_or_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Policy(name=data.get("name", path.stem), labeler=data.get("labeler", "script"),
                  actions=dict(data.get("actions") or {}), default=data.get("default", "keep"),
                  model=data.get("model"))


def origin_model_path(name_or_path: str) -> str:
    """A shipped origin classifier by name (``mlt-etymology``) or a model folder (local or
    on shared storage, copied to the local cache)."""
    shipped = shipped_dir("models") / name_or_path
    if "/" not in name_or_path and shipped.is_dir():
        return str(shipped)
    return local_copy(name_or_path)
