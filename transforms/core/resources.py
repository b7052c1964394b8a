"""Data files shipped inside the package (rule tables, policies, models), by name."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def shipped_dir(folder: str) -> Path:
    return Path(str(files("xlcorpus.transforms") / folder))


def shipped_names(folder: str, suffix: str = ".yaml") -> list[str]:
    return sorted(p.name.removesuffix(suffix) for p in shipped_dir(folder).glob(f"*{suffix}"))


def shipped_or_path(folder: str, name_or_path: str, suffix: str = ".yaml") -> Path:
    """``name`` -> the shipped ``folder/name.yaml``; anything with a suffix is a path."""
    path = Path(name_or_path)
    if path.suffix:
        return path
    shipped = shipped_dir(folder) / f"{name_or_path}{suffix}"
    if not shipped.exists():
        raise FileNotFoundError(f"no shipped {folder[:-1]} {name_or_path!r}; shipped: {shipped_names(folder, suffix)}")
    return shipped
