"""Model files on shared storage (gs://, s3://, hdfs://, ...), copied once per worker.

fastText, CTranslate2 and friends need a local path. ``local_copy`` reads a remote
file or folder through Beam's FileSystems into a local cache keyed by its URL and
size, writing to a temporary name and renaming, so concurrent workers on one
machine never see half a file and a second call costs one ``match``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from xlcorpus.transforms.backends.lid_model import cache_dir, sha256_of


def is_remote(path: str) -> bool:
    scheme = path.split("://", 1)[0] if "://" in path else ""
    return bool(scheme) and scheme != "file"


def local_copy(path: str) -> str:
    """A local path for ``path``: itself when local, else a cached copy (file or folder)."""
    if not is_remote(path):
        return path.removeprefix("file://")
    # Beam's FileSystems only for remote paths: local use needs no Beam import.
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    base = path.rstrip("/")
    # A folder (CTranslate2 model, ...) is everything under it; otherwise a single file.
    files = [m for r in FileSystems.match([base + "/**"]) for m in r.metadata_list]
    single = not files
    if single:
        files = [m for r in FileSystems.match([base]) for m in r.metadata_list]
    if not files:
        raise FileNotFoundError(f"model {path}: no such file or folder")
    total = sum(m.size_in_bytes for m in files)
    key = hashlib.sha1(f"{base}\x00{total}".encode()).hexdigest()[:16]
    target = cache_dir() / "remote" / f"{key}-{Path(base).name}"
    if target.exists():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".part-"))
    for m in files:
        rel = Path(base).name if single else os.path.relpath(m.path, base)
        dest = tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        with FileSystems.open(m.path, compression_type=CompressionTypes.UNCOMPRESSED) as src, \
                open(dest, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    source = tmp / Path(base).name if single else tmp
    try:
        os.rename(source, target)
    except OSError:  # another worker finished first
        if not target.exists():
            raise
    return str(target)


def model_identity(path: str) -> dict:
    """Which model file a run used, for its report: the path and, when local, its SHA-256."""
    return {"path": path} | ({} if "://" in path else {"sha256": sha256_of(path)})
