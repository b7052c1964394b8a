"""Fingerprint of a demo output folder: one SHA-256 over every file, with the run's
clock readings and its own output path taken out of the reports (report.html, which
renders report.json with them, is left out).

A refactor must leave it unchanged: ``python bench/demo_fingerprint.py DIR`` before
and after (``xlcorpus demo --output DIR``) print the same line.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

VOLATILE = {"started", "seconds", "rows_per_second", "sentences_per_second"}


def _stable_report(path: Path, root: Path) -> bytes:
    report = json.loads(path.read_text(encoding="utf-8"))
    for key in VOLATILE:
        report.pop(key, None)
    text = json.dumps(report, sort_keys=True, ensure_ascii=False)
    return text.replace(str(root), "<DIR>").encode()


def fingerprint(root: Path) -> tuple[str, dict[str, str]]:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "report.html":  # a rendering of report.json, clock readings included
            data = _stable_report(p, root) if p.name == "report.json" else p.read_bytes()
            files[str(p.relative_to(root))] = hashlib.sha256(data).hexdigest()
    total = hashlib.sha256("\n".join(f"{k} {v}" for k, v in files.items()).encode()).hexdigest()
    return total, files


if __name__ == "__main__":
    root = Path(sys.argv[1]).resolve()
    total, files = fingerprint(root)
    if "-v" in sys.argv:
        for name, digest in files.items():
            print(digest, name)
    print(f"RESULT fingerprint={total} files={len(files)}")
