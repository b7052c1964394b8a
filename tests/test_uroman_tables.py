"""uroman's table cache: a Uroman rebuilt from it equals a freshly loaded one, and a
missing, corrupt, foreign or hostile cache file means a normal load."""

from __future__ import annotations

import pickle
from collections import defaultdict

import pytest
import uroman

from tests.test_romanize import SENTENCES, TRICKY
from xlcorpus.transforms.stages.transliterate import uroman_tables
from xlcorpus.transforms.stages.transliterate.uroman_tables import load_uroman, tables_key, tables_path


def plain(obj):
    """A value comparable with ==: uroman's RomRule/Script bags (no __eq__) by their
    attributes, defaultdicts with their factory's result for a missing key."""
    if isinstance(obj, (uroman.uroman.RomRule, uroman.uroman.Script)):
        return type(obj).__name__, plain(vars(obj))
    if isinstance(obj, dict):
        default = ("default", repr(obj.default_factory())) if isinstance(obj, defaultdict) else ()
        return default, {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


# A fresh Uroman's attributes as loaded, before any test romanizes with it (romanizing
# fills uroman's memo dicts, so comparing the live object would depend on test order).
FRESH_TABLES: dict = {}


@pytest.fixture(scope="module")
def fresh():
    u = uroman.Uroman()
    FRESH_TABLES.update({name: plain(value) for name, value in vars(u).items()})
    return u


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A directory whose table cache was written by a first load_uroman."""
    directory = tmp_path_factory.mktemp("uroman-tables")
    load_uroman(directory)
    assert tables_path(tables_key(), directory).is_file()
    return directory


@pytest.fixture
def no_parse(monkeypatch):
    """uroman's own load fails: what loads anyway came from the cache."""
    def fail(self, *args, **kwargs):
        raise AssertionError("uroman parsed its data files")
    monkeypatch.setattr(uroman.Uroman, "__init__", fail)


def test_cached_tables_equal_a_fresh_load(fresh, stored, no_parse):
    cached = load_uroman(stored)
    assert type(cached) is uroman.Uroman
    assert set(vars(cached)) == set(FRESH_TABLES)
    for name, value in FRESH_TABLES.items():
        assert plain(getattr(cached, name)) == value, name
    assert cached.dict_num["no such key"] is None  # defaultdict(lambda: None) kept its default


def test_cached_uroman_romanizes_like_a_fresh_one(fresh, stored, no_parse):
    cached = load_uroman(stored)
    lines = [s for group in SENTENCES.values() for s in group] + TRICKY + [" ".join(TRICKY)]
    for line in lines:
        for lcode in (None, "ara", "jpn", "amh"):
            got = cached.romanize_string(line, lcode=lcode, rom_format=uroman.RomFormat.EDGES)
            want = fresh.romanize_string(line, lcode=lcode, rom_format=uroman.RomFormat.EDGES)
            assert [(e.start, e.end, e.txt) for e in got] == [(e.start, e.end, e.txt) for e in want], (line, lcode)


def test_corrupt_cache_falls_back_and_is_rewritten(fresh, stored, tmp_path):
    path = tables_path(tables_key(), tmp_path)
    path.write_bytes(tables_path(tables_key(), stored).read_bytes()[:100_000])  # truncated
    u = load_uroman(tmp_path)
    assert u.romanize_string("Москва 東京") == fresh.romanize_string("Москва 東京")
    assert pickle.loads(path.read_bytes())["key"] == tables_key()  # rewritten whole


HOSTILE_CALLS = []


def hostile_call(*args):
    HOSTILE_CALLS.append(args)
    return {}


class Hostile:
    def __reduce__(self):
        return (hostile_call, ("ran",))  # any callable outside the tables


def test_bad_cache_files_are_not_used(stored, tmp_path):
    """Each is a cache miss (then a normal load, as above)."""
    key = tables_key()
    good = pickle.loads(tables_path(key, stored).read_bytes())
    attributes = uroman_tables._ATTRIBUTES
    path = tmp_path / "tables.pickle"
    for payload in (b"not a pickle", b"", pickle.dumps({**good, "key": "0" * 64}),
                    pickle.dumps({"key": key, "state": {**good["state"], "extra": 1}}),
                    pickle.dumps({"key": key, "state": Hostile()}), pickle.dumps([key])):
        path.write_bytes(payload)
        assert uroman_tables._read(path, key, attributes) is None
    assert HOSTILE_CALLS == []  # the unpickler refused to build it
    assert uroman_tables._read(tmp_path / "missing", key, attributes) is None


def test_unwritable_cache_still_loads(fresh, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    u = load_uroman(blocker / "sub")  # its directory cannot be created
    assert u.romanize_string("Ελλάδα") == fresh.romanize_string("Ελλάδα")


def test_key_follows_the_data_files(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "romanization-table.txt").write_text("a")
    monkeypatch.setattr(uroman.Uroman, "default_data_dir", staticmethod(lambda **_: data))
    before = tables_key()
    (data / "romanization-table.txt").write_text("b")
    assert tables_key() != before


def test_a_table_that_does_not_pickle_skips_the_cache(fresh, tmp_path, monkeypatch):
    """A future uroman storing something unpicklable: the load still works, nothing is written."""
    real_state = uroman_tables._state
    monkeypatch.setattr(uroman_tables, "_state", lambda u: {**real_state(u), "rom_rules": lambda: None})
    u = load_uroman(tmp_path)
    assert u.romanize_string("Ελλάδα") == fresh.romanize_string("Ελλάδα")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_cache_file_is_readable_by_others(stored):
    assert tables_path(tables_key(), stored).stat().st_mode & 0o777 == 0o644
