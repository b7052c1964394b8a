"""Remote model paths are copied once into the local cache through Beam's FileSystems."""

from __future__ import annotations

from pathlib import Path

import pytest
from xlcorpus.transforms.backends.model_cache import is_remote, local_copy

from .objectstore import ObjectStore


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("XLCORPUS_CACHE", str(tmp_path / "cache"))
    ObjectStore.root = tmp_path / "bucket"
    ObjectStore.opened = []
    (tmp_path / "bucket" / "models" / "ct2").mkdir(parents=True)
    (tmp_path / "bucket" / "models" / "lid.ftz").write_bytes(b"fasttext bytes")
    (tmp_path / "bucket" / "models" / "ct2" / "model.bin").write_bytes(b"weights")
    (tmp_path / "bucket" / "models" / "ct2" / "vocab.json").write_text("{}")
    return ObjectStore


def test_local_paths_are_returned_unchanged(tmp_path):
    assert not is_remote("/a/b") and not is_remote("file:///a/b") and is_remote("gs://b/m")
    assert local_copy(str(tmp_path)) == str(tmp_path)
    assert local_copy("file:///x/y") == "/x/y"


def test_remote_file_is_copied_once(store):
    first = local_copy("teststore://models/lid.ftz")
    assert Path(first).read_bytes() == b"fasttext bytes" and Path(first).name.endswith("lid.ftz")
    assert local_copy("teststore://models/lid.ftz") == first
    assert store.opened == ["teststore://models/lid.ftz"]  # the second call read nothing


def test_remote_folder_is_copied_with_its_files(store):
    folder = Path(local_copy("teststore://models/ct2/"))
    assert sorted(p.name for p in folder.iterdir()) == ["model.bin", "vocab.json"]
    assert (folder / "model.bin").read_bytes() == b"weights"


def test_missing_remote_model(store):
    with pytest.raises(FileNotFoundError, match="teststore://models/nope"):
        local_copy("teststore://models/nope")
