"""The shipped Maltese origin classifier: what the project trains, and what the
maltese-arabic policy does with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xlcorpus.pipelines.etymology import read_rows
from xlcorpus.transforms.core.resources import shipped_dir
from xlcorpus.transforms.stages.transliterate.origin import OriginClassifier
from xlcorpus.transforms.stages.transliterate.policies import origin_model_path
from xlcorpus.transforms.stages.transliterate.stage import Transliterator

MLRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlrs-malti-etymology" / "annotations.tsv"
SHIPPED = shipped_dir("models") / "mlt-etymology"


def test_shipped_model_labels_maltese_words():
    clf = OriginClassifier.load(origin_model_path("mlt-etymology"))
    assert clf.predict(["qalb", "kelb", "ħobż", "kompjuter", "università", "."]) == [
        "Arabic", "Arabic", "Arabic", "Non-Arabic", "Non-Arabic", "Symbol"]


def test_maltese_arabic_policy_transliterates_only_arabic_origin_words():
    [res] = Transliterator({"mlt": "maltese-arabic"}).transliterate_batch(
        ["Il-kelb tiegħi jħobb il-kompjuter."], ["mlt"])
    origins = {w["start"]: w["origin"] for w in res.tokens}
    assert origins[0] == "Arabic" and origins[3] == "Arabic"  # il-, kelb
    assert "kompjuter" in res.text  # a Romance/English-origin word is kept
    assert "الكلب" in res.text
    assert all(w["action"] == ("transliterate:mlt-Arab" if w["origin"] == "Arabic" else "keep") for w in res.tokens)


@pytest.mark.slow
def test_shipped_model_is_what_training_gives(tmp_path):
    """Retraining from ../shared reproduces the shipped model: the same lookup and
    labels, and the same predictions on words it never saw. (Bytes match on this
    machine; floating point may differ in the last bits on another CPU.)"""
    if not MLRS.exists():
        if os.environ.get("XLCORPUS_NO_SHARED") == "1":
            pytest.skip(f"XLCORPUS_NO_SHARED=1: skipping the retraining check (MLRS data not at {MLRS})")
        pytest.fail(f"MLRS etymology data missing: {MLRS} (../shared beside the checkout); "
                    "set XLCORPUS_NO_SHARED=1 to skip this test")
    subprocess.run([sys.executable, "-m", "xlcorpus.pipelines.cli", "etymology", "train", "--data", str(MLRS),
                    "--label-column", "category_merged", "--sentence-column", "id", "--quantize",
                    "--out", str(tmp_path / "m")], check=True, capture_output=True)
    fresh, shipped = (json.loads((d / "origin.json").read_text()) for d in (tmp_path / "m", SHIPPED))
    assert fresh["labels"] == shipped["labels"] and fresh["lookup"] == shipped["lookup"]
    words = sorted({r["token"] for r in read_rows(MLRS) if r["token"].isalpha()})
    unseen = [w + "ijiet" for w in words[:400]] + ["x" + w for w in words[400:800]]  # not in the lookup
    a = OriginClassifier.load(tmp_path / "m").predict(unseen)
    b = OriginClassifier.load(SHIPPED).predict(unseen)
    assert sum(x == y for x, y in zip(a, b)) >= 0.99 * len(unseen)
