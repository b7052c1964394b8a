"""The built wheel installs the three code folders under one namespace and imports."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_layout_and_import(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
                   check=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("xlcorpus-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for must in ("xlcorpus/schemas/__init__.py", "xlcorpus/transforms/stages/langid.py", "xlcorpus/pipelines/cli.py",
                 "xlcorpus/pipelines/data/demo.yaml", "xlcorpus/pipelines/data/demo.jsonl"):
        assert must in names
    assert not [n for n in names if n.split("/")[0] in ("schemas", "transforms", "pipelines", "tests", "bench")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "xlcorpus = xlcorpus.pipelines.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    # import from the unpacked wheel alone (dependencies from this environment), not the checkout
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = ("import xlcorpus.pipelines.cli as c, xlcorpus.schemas as s; "
            "print(c.__file__); print(c.demo_config_path().exists()); print(s.dataset_schema().names[0])")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(unpacked)!r}); {code}"],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert out[0].startswith(str(unpacked)) and out[1:] == ["True", "id"]
