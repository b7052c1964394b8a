"""End-to-end runs on Beam's DirectRunner: dataset layout, accounting, determinism."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xlcorpus.pipelines.cli import demo_config_path, main
from xlcorpus.pipelines.config import ConfigError, load_config
from xlcorpus.pipelines.corpus import OutputExistsError, run_corpus
from xlcorpus.schemas import DEAD_LETTER_SCHEMA, REJECTED_SCHEMA, dataset_schema, output_features

from .conftest import data_file_hashes, write_jsonl


def demo_config(out: Path, **overrides):
    config = load_config(demo_config_path())
    config.output.path = str(out)
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        setattr(getattr(config, section), key, value)
    return config


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    report = run_corpus(demo_config(out))
    return out, report


def test_demo_dataset_loads_with_the_declared_features(demo_run):
    out, report = demo_run
    dd = datasets.load_from_disk(str(out))
    assert set(dd) == {"train", "validation", "test"}
    expected = output_features(dataset_schema([s["stage"] for s in report["stages"][1:]]))
    for split in dd.values():
        assert split.features == expected
    assert {s: len(d) for s, d in dd.items()} == report["splits"]
    assert sum(report["splits"].values()) == report["accounting"]["kept"]
    # languages in the report are those of the rows written
    langs = Counter(lang for d in dd.values() for lang in d["lang"])
    assert dict(langs) == report["languages"]
    assert len(langs) >= 15, langs
    assert {"mlt", "swa", "rus", "ara", "hin", "zho"} <= set(langs)


def test_demo_report_balances_and_matches_rejected_and_dead_letter(demo_run):
    out, report = demo_run
    acct = report["accounting"]
    assert acct["balanced"] and acct["in"] == acct["kept"] + acct["rejected"] + acct["dead_letter"]
    with open(demo_config_path().parent / "demo.jsonl", "rb") as f:
        assert acct["in"] == sum(1 for _ in f)
    rejected = datasets.load_from_disk(str(out / "_rejected"))
    dead = datasets.load_from_disk(str(out / "_dead_letter"))
    assert rejected.features == output_features(REJECTED_SCHEMA)
    assert dead.features == output_features(DEAD_LETTER_SCHEMA)
    assert len(rejected) == acct["rejected"] and len(dead) == acct["dead_letter"]
    stages = report["stages"]
    assert [s["stage"] for s in stages] == ["read", "dedup", "langid", "quality", "lexfilter", "transliterate"]
    assert stages[0]["in"] == acct["in"] and stages[-1]["kept"] == acct["kept"]
    assert all(b["in"] == a["kept"] for a, b in zip(stages, stages[1:]))
    assert Counter(zip(rejected["stage"], rejected["reason"])) == Counter(
        {(s["stage"], reason): n for s in stages for reason, n in s["rejected"].items()})
    assert Counter(dead["reason"]) == Counter(stages[0]["dead_letter"])
    by_name = {s["stage"]: s for s in stages}
    assert by_name["lexfilter"]["rejected"]["lexically_distant"] > 0  # the demo's Swahili rows far from Comorian
    assert by_name["dedup"]["rejected"] == {"duplicate": 6}  # the sample's planted copies (*-copy, boiler-*)
    # the demo's broken tail: the reader dead-letters each line with its number
    assert {"invalid_json", "missing_text", "text_not_string", "not_an_object", "blank_line", "nul_byte"} <= set(
        dead["reason"])
    assert all(line is not None and line > 0 for line in dead["line"])
    assert "empty_text" in rejected["reason"]
    assert report["models"]["langid"]["bundled"] is True


def test_demo_transliterates_maltese_and_romanizes_other_scripts(demo_run):
    out, _ = demo_run
    rows = [r for d in datasets.load_from_disk(str(out)).values() for r in d]
    maltese = [r for r in rows if r["lang"] == "mlt"]
    assert maltese and all(r["translit_policy"] == "maltese-arabic" for r in maltese)
    assert all(any("\u0600" <= c <= "\u06ff" for c in r["translit_text"]) for r in maltese)  # Arabic script
    origins = {w["origin"] for r in maltese for w in r["translit_tokens"]}
    assert {"Arabic", "Non-Arabic"} <= origins
    russian = [r for r in rows if r["lang"] == "rus"]
    assert russian and all(r["translit_text"].isascii() for r in russian)
    english = [r for r in rows if r["lang"] == "eng"]
    assert all(r["translit_text"] == r["text"] for r in english)  # Latin script is kept


def test_rows_are_unique_across_splits(demo_run):
    out, _ = demo_run
    dd = datasets.load_from_disk(str(out))
    ids = [i for d in dd.values() for i in d["id"]]
    assert len(ids) == len(set(ids))


def test_same_input_same_bytes(demo_run, tmp_path):
    out, _ = demo_run
    run_corpus(demo_config(tmp_path / "again"))
    first, second = data_file_hashes(out), data_file_hashes(tmp_path / "again")
    assert first and first == second


@pytest.mark.slow
def test_multi_processing_gives_the_same_bytes_as_in_memory(tmp_path, demo_jsonl):
    # several input files, so that two worker processes really share the work
    lines = demo_jsonl.read_bytes().splitlines(keepends=True)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(4):
        (inputs / f"part-{i}.jsonl").write_bytes(b"".join(lines[i::4]))
    base = demo_config(tmp_path / "a", input__paths=[str(inputs / "*.jsonl")])
    report_a = run_corpus(base)
    report_b = run_corpus(demo_config(tmp_path / "b", input__paths=[str(inputs / "*.jsonl")]),
                          ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert report_a["accounting"] == report_b["accounting"]
    assert report_b["beam_args"][0] == "--direct_running_mode=multi_processing"
    assert data_file_hashes(tmp_path / "a") == data_file_hashes(tmp_path / "b")
    assert len(report_a["inputs"]) == 4


def test_partition_by_language(tmp_path):
    report = run_corpus(demo_config(tmp_path / "p", output__partition_by="lang"))
    for lang, rows in report["partitions"].items():
        dd = datasets.load_from_disk(str(tmp_path / "p" / lang))
        assert sum(len(d) for d in dd.values()) == rows
        assert set(dd["train"]["lang"]) <= {lang}
    assert sum(report["partitions"].values()) == report["accounting"]["kept"]


def test_keep_list_and_label_only(tmp_path):
    keep = run_corpus(demo_config(tmp_path / "k", langid__keep=["mt", "sw"]))
    assert set(keep["languages"]) <= {"mlt", "swa"} and keep["languages"]
    assert _stage(keep, "langid")["rejected"]["lid_not_kept"] > 100
    tag = run_corpus(demo_config(tmp_path / "t", langid__label_only=True, lexfilter__enabled=False,
                                 quality__enabled=False))
    assert _stage(tag, "langid")["rejected"] == {}
    assert tag["accounting"]["kept"] == _stage(tag, "langid")["in"]


def _stage(report: dict, name: str) -> dict:
    return next(s for s in report["stages"] if s["stage"] == name)


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        run_corpus(demo_config(out))
    assert (out / "keep.txt").read_text() == "precious"
    run_corpus(demo_config(out, output__overwrite=True))
    assert not (out / "keep.txt").exists() and (out / "dataset_dict.json").exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # temp dir renamed away


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("langid:\n  treshold: 0.5\noutput:\n  splits: {train: -1}\ninput:\n  batch_size: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    msg = str(e.value)
    assert "langid.treshold" in msg and "output.splits" in msg and "input.batch_size" in msg


def test_cli_broken_file_goes_to_dead_letter_and_exits_zero(tmp_path):
    broken = write_jsonl(tmp_path / "broken.jsonl", [
        {"id": "ok", "text": "A perfectly fine English sentence about the market."},
        '{"id": "b1", "text": "unterminated',
        {"id": "b2", "text": None},
        "",
        {"id": "ok2", "text": "Another fine English sentence about the weather today."},
    ])
    with open(broken, "ab") as f:
        f.write(b'{"id": "b3", "text": "\xff invalid utf-8"}\n')
    out = tmp_path / "out"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([shutil.which("xlcorpus", path=env["PATH"]), "run", str(demo_config_path()),
                           "--input", str(broken), "--output", str(out)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    dead = datasets.load_from_disk(str(out / "_dead_letter"))
    assert sorted(zip(dead["line"], dead["reason"])) == [
        (2, "invalid_json"), (3, "text_not_string"), (4, "blank_line"), (6, "invalid_utf8")]
    assert all(e.startswith(f"{broken}:") for e in dead["error"])
    kept = datasets.load_from_disk(str(out))
    assert sorted(i for d in kept.values() for i in d["id"]) == ["ok", "ok2"]
    report = json.loads((out / "report.json").read_text())
    assert report["accounting"] == {"in": 6, "kept": 2, "rejected": 0, "dead_letter": 4, "balanced": True}


def test_cli_inspect_and_user_errors(demo_run, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich folds long cells at 80 columns without a terminal
    out, report = demo_run
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "train" in text and str(report["splits"]["train"]) in text and "lang_topk" in text
    assert f"mlt {report['languages']['mlt']}" in text  # rows per language, from the data
    assert main(["inspect", str(out), "--sample", "3", "--lang", "mlt"]) == 0
    text = capsys.readouterr().out
    assert "3 row(s) of mlt" in text and "mlt-" in text and "eng-" not in text
    assert main(["inspect", str(out), "--rejected", "dedup:duplicate"]) == 0
    text = capsys.readouterr().out
    assert "6 row(s) rejected as dedup:duplicate" in text and "eng-01-copy" in text and '"kept":"eng-01"' in text
    assert main(["inspect", str(out), "--rejected", "no_such_reason"]) == 1
    assert "reasons: " in capsys.readouterr().out
    assert main(["run", "/nonexistent.yaml", "--output", "x"]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_missing_input_fails_before_running(tmp_path):
    with pytest.raises(FileNotFoundError, match="matches no file"):
        run_corpus(demo_config(tmp_path / "o", input__paths=[str(tmp_path / "none-*.jsonl")]))


# --- property: malformed files through the whole pipeline ----------------------------
line = st.one_of(
    st.fixed_dictionaries({"text": st.text(max_size=30)}).map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=30).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.just(b'{"text": 5}'), st.just(b""),
)


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(line, min_size=1, max_size=25))
def test_malformed_files_through_the_pipeline(tmp_path, lines):
    case = tmp_path / os.urandom(4).hex()
    case.mkdir()
    src = case / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    report = run_corpus(demo_config(case / "out", input__paths=[str(src)]))
    acct = report["accounting"]
    assert acct["balanced"] and acct["in"] == len(lines)
    dead = datasets.load_from_disk(str(case / "out" / "_dead_letter"))
    kept = datasets.load_from_disk(str(case / "out"))
    rejected = datasets.load_from_disk(str(case / "out" / "_rejected"))
    seen = sorted(list(dead["line"]) + [n for d in kept.values() for n in d["line"]] + list(rejected["line"]))
    assert seen == list(range(1, len(lines) + 1))
    for n, raw in zip(dead["line"], dead["raw"]):
        assert raw == lines[n - 1]


def test_config_overrides():
    config = load_config(demo_config_path(), overrides=["langid.keep=[mt, sw]", "langid.threshold=0.7",
                                                        "output.splits={train: 1}", "name=nightly"])
    assert config.langid.keep == ["mt", "sw"] and config.langid.threshold == 0.7
    assert config.output.splits == {"train": 1} and config.name == "nightly"
    with pytest.raises(ConfigError, match="langid.treshold"):
        load_config(demo_config_path(), overrides=["langid.treshold=0.7"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(demo_config_path(), overrides=["langid.threshold"])


def test_output_on_an_object_store(tmp_path):
    from .objectstore import ObjectStore

    ObjectStore.root = tmp_path / "bucket"
    (tmp_path / "bucket").mkdir()
    report = run_corpus(demo_config("teststore://runs/demo"))
    local = tmp_path / "bucket" / "runs" / "demo"
    dd = datasets.load_from_disk(str(local))
    assert sum(len(d) for d in dd.values()) == report["accounting"]["kept"] > 0
    assert (local / "report.json").exists() and not list((tmp_path / "bucket" / "runs").glob("demo.tmp-*"))
    with pytest.raises(OutputExistsError):
        run_corpus(demo_config("teststore://runs/demo"))


def test_lexfilter_fast_mode_reaches_the_stage_from_config(tmp_path, demo_run):
    """lexfilter.max_word_edits (the >= 1M tokens/s mode) reaches the stage: far words
    count as 1.0, so at the demo's threshold every Swahili row scores too far."""
    _, exact = demo_run
    config = load_config(demo_config_path(), overrides=[f"output.path={tmp_path / 'fast'}",
                                                        "lexfilter.max_word_edits=1"])
    fast = run_corpus(config)
    assert fast["config"]["lexfilter"]["max_word_edits"] == 1
    before = {r["stage"]: r for r in exact["stages"]}["lexfilter"]
    after = {r["stage"]: r for r in fast["stages"]}["lexfilter"]
    assert after["rejected"]["lexically_distant"] > before["rejected"]["lexically_distant"]
    dd = datasets.load_from_disk(str(tmp_path / "fast"))
    assert "swa" not in {lang for s in dd.values() for lang in s["lang"]}
