"""Unicode scripts (ISO 15924) of texts, vectorised (shared by stages; not a stage).

The majority script of a text counts only script-bearing characters: Common
(punctuation, digits, spaces), Inherited (combining marks) and unassigned
characters never win.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

NEUTRAL_SCRIPTS = ("Zyyy", "Zinh", "Zzzz")

# ISO 15924 codes of the scripts in Unicode; codes the installed `regex` does not know
# are skipped. Zyyy (Common), Zinh (Inherited) and Zzzz (Unknown) never win a majority.
_SCRIPT_CODES = (
    "Zyyy Zinh Zzzz Adlm Aghb Ahom Arab Armi Armn Avst Bali Bamu Bass Batk Beng Bhks Bopo Brah Brai "
    "Bugi Buhd Cakm Cans Cari Cham Cher Chrs Copt Cpmn Cprt Cyrl Deva Diak Dogr Dsrt Dupl Egyp Elba "
    "Elym Ethi Gara Geor Glag Gong Gonm Goth Gran Grek Gujr Gukh Guru Hang Hani Hano Hatr Hebr Hira "
    "Hluw Hmng Hmnp Hung Ital Java Kali Kana Kawi Khar Khmr Khoj Kits Knda Krai Kthi Lana Laoo Latn "
    "Lepc Limb Lina Linb Lisu Lyci Lydi Mahj Maka Mand Mani Marc Medf Mend Merc Mero Mlym Modi Mong "
    "Mroo Mtei Mult Mymr Nagm Nand Narb Nbat Newa Nkoo Nshu Ogam Olck Onao Orkh Orya Osge Osma Ougr "
    "Palm Pauc Perm Phag Phli Phlp Phnx Plrd Prti Rjng Rohg Runr Samr Sarb Saur Sgnw Shaw Shrd Sidd "
    "Sind Sinh Sogd Sogo Sora Soyo Sund Sunu Sylo Syrc Tagb Takr Tale Talu Taml Tang Tavt Telu Tfng "
    "Tglg Thaa Thai Tibt Tirh Tnsa Todr Toto Tutg Ugar Vaii Vith Wara Wcho Xpeo Xsux Yezi Yiii Zanb"
).split()
_TABLE_SIZE = 0x110000  # every code point: a 1.1 MB uint8 table, no range checks per char
_NEUTRAL = len(NEUTRAL_SCRIPTS)  # the first codes below


@functools.cache
def _script_table() -> tuple[np.ndarray, tuple[str, ...]]:
    """Code point -> index into the tuple of script codes (built once per process, ~0.3 s)."""
    # Scripts stop at plane 3 (U+323AF in Unicode 16); the rest stays Unknown.
    positions = np.array([c for c in range(0x40000) if not 0xD800 <= c <= 0xDFFF], dtype=np.int64)
    chars = "".join(map(chr, positions.tolist()))
    table = np.full(_TABLE_SIZE, 2, dtype=np.uint8)  # Zzzz
    codes: list[str] = []
    for code in _SCRIPT_CODES:
        try:
            pattern = regex.compile(rf"\p{{Script={code}}}+")
        except regex.error:
            continue
        index = len(codes)
        codes.append(code)
        for m in pattern.finditer(chars):
            table[positions[m.start():m.end()]] = index
    return table, tuple(codes)


def majority_scripts(texts: pa.Array) -> pa.Array:
    """Majority script (ISO 15924) of each text, ignoring Common/Inherited characters.

    Vectorised: all texts are decoded to code points once and counted with numpy.
    Texts with no script-bearing character get ``Zyyy``.
    """
    table, codes = _script_table()
    texts = texts.cast(pa.large_string()) if pa.types.is_string(texts.type) else texts
    texts = pc.fill_null(texts, "")
    n = len(texts)
    if n == 0:
        return pa.array([], pa.string())
    joined = _joined(texts)
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    sids = table[cps]
    bearing = sids >= _NEUTRAL  # only script-bearing characters vote
    rows = np.repeat(np.arange(n, dtype=np.int32), lengths)[bearing]
    keys = rows * np.int32(len(codes)) + sids[bearing]
    counts = np.bincount(keys, minlength=n * len(codes)).reshape(n, len(codes))
    best = counts.argmax(axis=1)
    best[counts.sum(axis=1) == 0] = 0  # Zyyy
    return pa.array(np.asarray(codes, dtype=object)[best], pa.string())


def _joined(texts: pa.Array) -> str:
    """All strings of a large_string array (sliced or not) as one str, without per-row Python."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset: texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    if data is None:
        return ""
    return data.to_pybytes()[offsets[0]:offsets[-1]].decode("utf-8")


def script_of(text: str) -> str:
    """Majority script of one string."""
    return majority_scripts(pa.array([text], pa.string()))[0].as_py()
