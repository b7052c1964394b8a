"""uroman's loaded tables, kept on disk once per machine.

``uroman.Uroman()`` parses its data files on every load: ~4 s of CPU per process, most
of it in ~480k ``regex`` calls, paid again by every worker and every run. What the load
builds is plain data (rules, scripts, character properties: dicts, lists, sets and
uroman's ``RomRule``/``Script`` attribute bags), so after the first load it is pickled,
and later loads (~0.2 s) rebuild an identical ``Uroman`` from it.

Safety: the file is keyed by a SHA-256 of uroman's version, its source and every data
file, plus the Python version, and carries the key inside; it is written to a temporary
name and renamed (concurrent workers never read half a file); it is read with an
unpickler that only builds the few types the tables consist of; and anything wrong
(missing, unreadable, other key, other attributes) means a normal load, which rewrites
it. The directory is the project's cache (``XLCORPUS_CACHE``, else ~/.cache/xlcorpus).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from xlcorpus.transforms.backends.lid_model import cache_dir

_log = logging.getLogger(__name__)

# What the tables are made of (and all the unpickler may build).
_ALLOWED = {("builtins", name) for name in ("dict", "list", "set", "tuple", "str", "int", "float", "bool")} | {
    ("collections", "defaultdict"), ("uroman.uroman", "RomRule"), ("uroman.uroman", "Script")}


class _TablesUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"uroman table cache: {module}.{name} is not part of the tables")
        return super().find_class(module, name)


_FORMAT = 2  # of what is stored; part of the key


def _none() -> None:
    return None


def tables_key(uroman_module=None) -> str:
    """What the loaded tables depend on: uroman's version and source, its data files
    (names and contents), the Python version (pickled types) and how they are stored."""
    if uroman_module is None:
        import uroman.uroman as uroman_module
    h = hashlib.sha256()
    h.update(f"{_FORMAT}\0{uroman_module.__version__}\0{sys.version_info[:2]}\0".encode())
    h.update(Path(uroman_module.__file__).read_bytes())
    data_dir = uroman_module.Uroman.default_data_dir()
    for path in sorted(data_dir.iterdir()):
        if path.is_file():
            h.update(f"\0{path.name}\0{path.stat().st_size}\0".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def tables_path(key: str, directory: Path | None = None) -> Path:
    return (directory or cache_dir() / "uroman") / f"tables-{key[:32]}.pickle"


def _state(u) -> dict:
    """A freshly loaded Uroman's attributes, picklable: ``dict_num`` is a
    ``defaultdict(lambda: None)``, stored as a plain dict; ``data_dir`` (a Path, whose
    class moves between Python versions) as a string."""
    state = dict(vars(u))
    state["dict_num"] = dict(state["dict_num"])
    state["data_dir"] = str(state["data_dir"])
    return state


def _restore(state: dict):
    import uroman

    u = uroman.Uroman.__new__(uroman.Uroman)  # no __init__: that is the load being skipped
    state = dict(state)
    state["dict_num"] = defaultdict(_none, state["dict_num"])
    state["data_dir"] = Path(state["data_dir"])
    u.__dict__.update(state)
    return u


def _read(path: Path, key: str, attributes: set[str]):
    """The Uroman stored at ``path``, or None when it is missing, unreadable or not ours."""
    try:
        payload = _TablesUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception:  # a truncated, foreign or corrupt file is a cache miss, never an error
        return None
    if not (isinstance(payload, dict) and payload.get("key") == key and isinstance(payload.get("state"), dict)
            and set(payload["state"]) == attributes and isinstance(payload["state"]["dict_num"], dict)
            and isinstance(payload["state"]["data_dir"], str)):
        return None
    return _restore(payload["state"])


def _write(path: Path, key: str, state: dict) -> None:
    data = pickle.dumps({"key": key, "state": state}, protocol=pickle.HIGHEST_PROTOCOL)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        # mkstemp makes the file private (0600); the tables are public data, and a cache
        # directory shared by several users should serve all of them.
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# The attributes Uroman.__init__ sets (1.3.1.1); another version has another key, and a
# stored state with other attributes is not used.
_ATTRIBUTES = {"data_dir", "rom_rules", "scripts", "dict_bool", "dict_str", "dict_int", "dict_num", "num_props",
               "dict_set", "fraction_connectors", "minus_signs", "plus_signs", "float2fraction", "rom_cache",
               "rom_cache_size", "rom_max_cache_size", "cache_p", "hangul_rom", "stats", "abugida_cache",
               "n_error_messages_output", "n_non_utf8_characters"}


def load_uroman(directory: Path | None = None):
    """A ``uroman.Uroman()`` (default data, cache off) from the table cache, or loaded
    normally and then stored there (a cache that cannot be written is skipped)."""
    import uroman

    try:
        key = tables_key()
        path = tables_path(key, directory)
    except Exception as e:  # uroman's files unreadable, or another uroman layout: a normal load
        _log.warning("uroman table cache not used (%s: %s)", type(e).__name__, e)
        return uroman.Uroman()
    if (u := _read(path, key, _ATTRIBUTES)) is not None:
        return u
    u = uroman.Uroman()
    state = _state(u)  # before any romanization fills uroman's memos
    if set(state) != _ATTRIBUTES:
        _log.warning("uroman table cache not used: this uroman sets other attributes than %s expects",
                     __name__)
        return u
    try:
        _write(path, key, state)
    except Exception as e:  # unwritable directory, or a table that does not pickle: skip the cache
        _log.warning("uroman table cache not written to %s (%s: %s)", path, type(e).__name__, e)
    return u
