"""A separate virtualenv with datatrove, the reference MinHash dedup that bench/dedup.py compares against.

datatrove is a peer tool used as a reference, so it never enters the project's dependencies: it
lives in its own virtualenv, made here on first use (needs the package registry once) and reused
after that (a stamp file records what was installed).  ``bench/datatrove_minhash.py`` runs under
that venv's python and needs no network.

What the venv holds, on top of ``datatrove==0.10.1`` (whose own requirements bring numpy, fsspec,
loguru, dill, multiprocess, tqdm, humanize and huggingface-hub):

* ``xxhash``: MinhashConfig's default HashConfig is ``hash_fc="xxhash"``, 64-bit; its
  ``__post_init__`` refuses to build without the package.
* ``regex``: ``datatrove.utils.text`` (text normalisation used for shingling) imports it at top level.
* ``orjson``: JsonlReader and JsonlWriter declare it as their requirement.
* ``spacy``: the word tokenizer.  Every language's MinHash signature goes through
  ``load_word_tokenizer(language)``; English ("eng", the default) and ~1,300 of the ~2,000
  languages in datatrove's tokenizer_assignment.csv map to a *blank* spaCy pipeline
  (``spacy.blank("en")``, ``spacy.blank("xx")``, ...): a rule-based tokenizer, no model, no data
  download.
* ``tokenizers``: ``datatrove.pipeline.dedup/__init__`` imports exact_substrings, which imports
  HF ``tokenizers`` at top level, so the MinHash classes cannot be imported without it (nothing
  is loaded from a hub).

Usage::

    from bench.datatrove_env import ensure_venv
    python = ensure_venv()            # <repo>/bench/.venvs/datatrove/bin/python
    subprocess.run([str(python), "bench/datatrove_minhash.py", ...], check=True)

or ``python bench/datatrove_env.py [ROOT]``, which prints the python path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPO / "bench" / ".venvs" / "datatrove"

# Exact pins: the reference numbers must not drift with a new release of any of them.
REQUIREMENTS = (
    "datatrove==0.10.1",
    "xxhash==3.8.2",
    "regex==2026.11.19",
    "orjson==3.13.0",
    "spacy==3.8.18",
    "tokenizers==0.23.3",
)

# Run in the new venv before the stamp is written: imports what bench/datatrove_minhash.py uses and
# tokenizes with the default ("eng") word tokenizer, so a broken install is caught here, not mid-benchmark.
_SMOKE = r"""
import datatrove, spacy
from importlib.metadata import version
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (MinhashConfig, MinhashDedupSignature, MinhashDedupBuckets,
                                      MinhashDedupCluster, MinhashDedupFilter)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
sig = MinhashDedupSignature(output_folder="/tmp/_unused", config=MinhashConfig(hash_config=HashConfig()))
assert sig.get_shingles("one two three four five six seven").shape == (3, 1)
print(version("datatrove"))
"""


def _stamp_text() -> str:
    return json.dumps({"python": sys.version.split()[0], "requirements": list(REQUIREMENTS)}, indent=1) + "\n"


def venv_python(root: Path = DEFAULT_ROOT) -> Path:
    return Path(root) / "bin" / "python"


def ensure_venv(root: Path = DEFAULT_ROOT, *, quiet: bool = True) -> Path:
    """Create (once) the datatrove virtualenv at ``root`` and return its python.

    Idempotent: ``root/.stamp`` records the interpreter version and the pinned requirements; when
    it matches and the python exists nothing is done.  A changed pin list reinstalls into the same
    venv.  A lock file keeps two concurrent callers from installing at once.
    """
    root = Path(root).resolve()
    python = venv_python(root)
    stamp = root / ".stamp"
    want = _stamp_text()
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python

    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == want:
            return python
        if stamp.exists():
            try:
                old = json.loads(stamp.read_text()).get("python")
            except ValueError:
                old = None
            if old != sys.version.split()[0]:  # another interpreter: a venv cannot be moved across versions
                shutil.rmtree(root)
        stamp.unlink(missing_ok=True)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
        env.pop("PYTHONPATH", None)  # nothing of the project's environment leaks into the venv
        pip = [str(python), "-m", "pip", "install"] + (["-q"] if quiet else [])
        subprocess.run(pip + list(REQUIREMENTS), check=True, env=env)
        smoke_env = dict(env, HF_HUB_OFFLINE="1")
        subprocess.run([str(python), "-c", _SMOKE], check=True, env=smoke_env, cwd=str(root),
                       stdout=subprocess.DEVNULL if quiet else None)
        stamp.write_text(want)
    return python


def requirements_digest() -> str:
    """Short digest of the pinned set, for benchmark reports."""
    return hashlib.sha1("\n".join(REQUIREMENTS).encode()).hexdigest()[:12]


if __name__ == "__main__":
    print(ensure_venv(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_ROOT, quiet=False))
