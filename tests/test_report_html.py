"""report.html: written by every job, self-contained, escaped, and rendered by a real
browser (headless Chromium) with its charts and no console errors."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest

from xlcorpus.pipelines.cli import demo_config_path
from xlcorpus.pipelines.config import load_config
from xlcorpus.pipelines.corpus import run_corpus
from xlcorpus.pipelines.html_report import bar_chart, render

from .conftest import write_jsonl

HOSTILE = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    lines = demo_config_path().parent.joinpath("demo.jsonl").read_text(encoding="utf-8").splitlines()
    # the sample plus a hostile row: every text on the page must come out escaped
    inputs = write_jsonl(root / "in.jsonl", lines + [{"id": "hostile-1", "text": "This sentence is English and it "
                                                       "says " + HOSTILE}])
    config = load_config(demo_config_path(), overrides=[f"input.paths=[{inputs}]", f"output.path={root / 'out'}"])
    report = run_corpus(config)
    return root / "out", report


def test_page_is_self_contained_and_escaped(demo_report):
    out, report = demo_report
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<img" not in page  # the hostile row, wherever it landed, is escaped
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)  # nothing fetched from a network
    assert page.count('<svg class="chart"') >= 8
    for heading in ("Accounting", "Languages", "Language-ID score per language", "Scripts",
                    "Lexical distance to the target", "Transliteration", "Duplicates", "Quality rules",
                    "Sample rows per language", "Sample rejected rows per reason"):
        assert f"<h2>{heading}</h2>" in page
    assert "dedup: duplicate" in page and "quality: word_count" in page  # rejected samples per reason
    assert "rows per language (log scale)" in page
    assert report["accounting"]["balanced"]


def test_projection_job_writes_its_report_too(tmp_path):
    from xlcorpus.pipelines.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out)]) == 0
    page = (out / "projection" / "report.html").read_text(encoding="utf-8")
    assert "<h2>Projection retention</h2>" in page and "constrained" in page
    assert (out / "report.html").exists() and (out / "README.md").exists()


def test_bar_chart_scales():
    linear = bar_chart("rows", {"a": 1000, "b": 10})
    log = bar_chart("rows", {"a": 1000, "b": 10}, log=True)
    widths = [float(w) for w in re.findall(r'<rect x="150" y="\d+" width="([\d.]+)"', linear)]
    log_widths = [float(w) for w in re.findall(r'<rect x="150" y="\d+" width="([\d.]+)"', log)]
    assert widths[0] / widths[1] == pytest.approx(100, rel=0.02)
    assert 2.5 < log_widths[0] / log_widths[1] < 3.5  # log10(1001) / log10(11)


def test_every_text_from_the_data_is_escaped():
    data = {"chars": {}, "scripts": {HOSTILE: 3}, "policies": {}, "origins": {}, "lid_histograms": {},
            "samples": {"eng": [{"id": HOSTILE, "text": HOSTILE}]},
            "rejected_samples": {"quality: word_count": [{"id": "r", "text": HOSTILE, "detail": HOSTILE}]}}
    page = render({"name": HOSTILE, "accounting": {"in": 1}}, data)
    assert "<script" not in page and "<img" not in page
    assert page.count(html.escape(HOSTILE, quote=True)) >= 6


def test_a_real_browser_renders_the_charts_without_errors(demo_report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed: `sudo apt-get install chromium` (Debian/Ubuntu); "
                    ".ci/run installs it")
    out, _ = demo_report
    url = (out / "report.html").as_uri()
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "report.png"
    run = subprocess.run(base + ["--window-size=1200,2400", f"--screenshot={shot}", url],
                         capture_output=True, text=True, timeout=180)
    assert shot.exists() and shot.stat().st_size > 20_000, run.stderr[-2000:]
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # the browser built the charts: SVG elements with bars in the rendered DOM
    assert dom.stdout.count('<svg class="chart"') >= 8 and dom.stdout.count("<rect") > 100
    console = [line for line in (run.stderr + dom.stderr).splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    json.loads((out / "report.json").read_text())  # the page sits beside the report it shows


def test_data_charts_read_a_bounded_number_of_rows(demo_report):
    from xlcorpus.pipelines.html_report import collect

    out, report = demo_report
    data = collect(out, max_rows=50)
    assert data["rows_read"] == 50 and sum(data["scripts"].values()) == 50
    assert "cover the first 50 of" in render(report, data)
    assert collect(out)["rows_read"] == report["accounting"]["kept"]
