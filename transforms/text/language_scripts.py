"""Which scripts each language is written in, from Unicode CLDR's ``languageData``
(the copy of CLDR's supplementalData.xml that the PyPI package ``language-data``
ships), keyed by ISO 639-3.

Primary and secondary scripts both count (Serbian: Cyrl Latn; Hindi: Deva, and Latn
as secondary). Script subtags that stand for several Unicode scripts are expanded
(Jpan = Hani Hira Kana, Kore = Hang Hani, Hans / Hant = Hani), so a text's grouped
writing system (``scripts.writing_systems``) and its Unicode scripts both match.
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from importlib.resources import files

from xlcorpus.transforms.text.languages import normalize_lang_code

SCRIPT_GROUPS = {"Jpan": {"Hani", "Hira", "Kana"}, "Kore": {"Hang", "Hani"}, "Hans": {"Hani"},
                 "Hant": {"Hani"}, "Hrkt": {"Hira", "Kana"}}
NO_EXPECTATION = ("zxx", "und", "mis", "mul")  # no linguistic content, undetermined, ...


def expand(scripts: set[str] | frozenset[str]) -> frozenset[str]:
    """``scripts`` plus the Unicode scripts and groups each one stands for."""
    out = set(scripts)
    for s in scripts:
        out |= SCRIPT_GROUPS.get(s, set())
    if out & {"Hani"} and out & {"Hira", "Kana"}:
        out.add("Jpan")
    if out & {"Hang"}:
        out.add("Kore")
    if "Hans" in scripts or "Hant" in scripts:
        out.add("Hani")
    return frozenset(out)


@functools.cache
def cldr_language_scripts() -> dict[str, frozenset[str]]:
    """ISO 639-3 -> the scripts CLDR lists for it (primary and secondary)."""
    path = files("language_data") / "data" / "supplementalData.xml"
    root = ET.fromstring(path.read_bytes())
    table: dict[str, set[str]] = {}
    for entry in root.iterfind("languageData/language"):
        scripts = (entry.get("scripts") or "").split()
        if scripts:
            table.setdefault(normalize_lang_code(entry.get("type")), set()).update(scripts)
    return {lang: frozenset(s) for lang, s in table.items()}


@functools.cache
def usual_scripts(lang: str, label_script: str | None = None) -> frozenset[str] | None:
    """Scripts ``lang`` is normally written in, expanded to Unicode scripts and
    groups; a label that names its script (GlotLID ``eng_Latn``) decides. None: no
    expectation (no-language codes, or a language CLDR does not describe)."""
    if lang in NO_EXPECTATION:
        return None
    if label_script:
        return expand({label_script})
    scripts = cldr_language_scripts().get(lang)
    return expand(scripts) if scripts else None
