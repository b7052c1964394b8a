"""Live progress: workers' running totals reach the driver's table during the run, on
the in-process and the multi-process DirectRunner; nothing is written without it."""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console

from xlcorpus.pipelines.cli import demo_config_path
from xlcorpus.pipelines.config import load_config
from xlcorpus.pipelines.corpus import run_corpus
from xlcorpus.transforms.core import progress


@pytest.fixture
def last_totals(monkeypatch):
    """The totals the live table held when the run ended."""
    seen: dict = {}
    exit_ = progress.LiveProgress.__exit__

    def spy(self, *exc):
        result = exit_(self, *exc)
        seen.update({stage: dict(counts) for stage, counts in self.last.items()})
        seen["folder"] = self.directory
        return result
    monkeypatch.setattr(progress.LiveProgress, "__exit__", spy)
    return seen


@pytest.mark.parametrize("beam_args", [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]],
                         ids=["in_memory", "multi_processing"])
def test_progress_counts_match_the_report(tmp_path, last_totals, beam_args):
    screen = io.StringIO()
    config = load_config(demo_config_path(), overrides=[f"output.path={tmp_path / 'out'}"])
    report = run_corpus(config, beam_args, progress=Console(file=screen, force_terminal=True, width=100))
    assert last_totals["read"]["read"] == report["accounting"]["in"]
    stages = {s["stage"]: s for s in report["stages"]}
    if not beam_args:  # in one process the last ticks are flushed: exact
        for name in ("dedup", "langid", "quality", "lexfilter", "transliterate"):
            assert last_totals[name] == {"in": stages[name]["in"], "kept": stages[name]["kept"]}
    else:  # worker processes write at most twice a second: never more than the truth
        assert 0 < last_totals["langid"]["in"] <= stages["langid"]["in"]
    assert "transliterate" in screen.getvalue()  # the table was drawn
    assert not os.path.exists(last_totals["folder"])  # the progress folder is gone
    assert not list((tmp_path / "out").rglob("*progress*"))  # and never was in the output


def test_no_progress_files_without_a_live_table(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    progress.tick("langid", "in", 5)  # no folder named: nothing happens
    monkeypatch.setenv(progress.ENV, str(tmp_path))
    progress.tick("langid", "in", 5)
    progress.flush(str(tmp_path))
    assert progress.read_totals(str(tmp_path)) == {"langid": {"in": 5}}
