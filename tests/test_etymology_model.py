"""The shipped Maltese origin classifier: what the project trains, and what the
maltese-arabic policy does with it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from xlcorpus.transforms.etymology import OriginClassifier
from xlcorpus.transforms.resources import shipped_dir
from xlcorpus.transforms.transliterate import Transliterator, origin_model_path

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
def test_shipped_model_is_exactly_what_training_gives(tmp_path):
    if not MLRS.exists():
        pytest.fail(f"{MLRS} is missing: the MLRS data must sit in ../shared beside the checkout")
    subprocess.run([sys.executable, "-m", "xlcorpus.pipelines.cli", "etymology", "train", "--data", str(MLRS),
                    "--label-column", "category_merged", "--sentence-column", "id", "--quantize",
                    "--out", str(tmp_path / "m")], check=True, capture_output=True)
    for name in ("ngram.bin", "origin.json"):
        assert hashlib.sha256((tmp_path / "m" / name).read_bytes()).hexdigest() == \
            hashlib.sha256((SHIPPED / name).read_bytes()).hexdigest(), name
