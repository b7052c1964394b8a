from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from xlcorpus.pipelines.cli import demo_config_path
from xlcorpus.transforms.stages.langid import FastTextModel
from xlcorpus.transforms.backends.lid_model import default_model_path


@pytest.fixture(scope="session")
def lid_model() -> FastTextModel:
    return FastTextModel(str(default_model_path()))


@pytest.fixture(scope="session")
def demo_jsonl() -> Path:
    return demo_config_path().parent / "demo.jsonl"


def write_jsonl(path: Path, records: list) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


def data_file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every Arrow data file under a written dataset."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*.arrow"))}
