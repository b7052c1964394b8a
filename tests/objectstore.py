"""A Beam FileSystem for the scheme ``teststore://`` backed by a local folder.

It stands in for gs:// or s3:// in tests: code under test reaches it only through
``apache_beam.io.filesystems.FileSystems``, as it would a real object store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.localfilesystem import LocalFileSystem

PREFIX = "teststore://"


class ObjectStore(LocalFileSystem):
    root: Path = Path("/nonexistent")
    opened: list[str] = []

    @classmethod
    def scheme(cls):
        return "teststore"

    def _local(self, path: str) -> str:
        return str(self.root / path.removeprefix(PREFIX))

    def _remote(self, path: str) -> str:
        return PREFIX + str(Path(path).relative_to(self.root))

    def match(self, patterns, limits=None):
        results = super().match([self._local(p) for p in patterns], limits)
        for r in results:
            for m in r.metadata_list:
                m.path = self._remote(m.path)
        return results

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        self.opened.append(path)
        return super().open(self._local(path), mime_type, compression_type)

    def create(self, path, mime_type="application/octet-stream", compression_type=None):
        return super().create(self._local(path), mime_type, compression_type)

    def mkdirs(self, path):
        return super().mkdirs(self._local(path))

    def exists(self, path):
        return super().exists(self._local(path))

    def rename(self, source_file_names, destination_file_names):
        for dest in destination_file_names:  # object stores have no directories to create first
            Path(self._local(dest)).parent.mkdir(parents=True, exist_ok=True)
        return super().rename([self._local(p) for p in source_file_names],
                              [self._local(p) for p in destination_file_names])

    def copy(self, source_file_names, destination_file_names):
        for dest in destination_file_names:
            Path(self._local(dest)).parent.mkdir(parents=True, exist_ok=True)
        return super().copy([self._local(p) for p in source_file_names],
                            [self._local(p) for p in destination_file_names])

    def delete(self, paths):
        # LocalFileSystem.delete matches through self.match (remote names): do it here.
        for path in paths:
            local = Path(self._local(path))
            if not local.exists():
                raise BeamIOError("Delete operation failed", {path: FileNotFoundError(path)})
            shutil.rmtree(local) if local.is_dir() else local.unlink()
