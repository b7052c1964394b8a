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

    Vectorised. Texts with no script-bearing character get ``Zyyy``; ties go to the
    script listed first in ``_SCRIPT_CODES`` (as ``script_counts(...).argmax``).
    """
    _, codes = _script_table()
    rows, sids, n = _bearing_scripts(texts)
    if n == 0:
        return pa.array([], pa.string())
    best = np.zeros(n, np.int64)  # Zyyy
    per_row = np.bincount(rows, minlength=n)
    bearing = np.flatnonzero(per_row)
    if len(bearing):
        # most texts (words, above all) have one script: their min is their majority; only
        # the others need a (texts x scripts) count matrix, which for all texts of a batch
        # of words is tens of MB
        first = (np.cumsum(per_row) - per_row)[bearing]
        low, high = np.minimum.reduceat(sids, first), np.maximum.reduceat(sids, first)
        best[bearing] = low
        mixed = bearing[low != high]
        if len(mixed):
            keep = np.isin(rows, mixed)
            best[mixed] = _count_matrix(np.searchsorted(mixed, rows[keep]), sids[keep], len(mixed), len(codes)
                                        ).argmax(axis=1)
    return pa.array(np.asarray(codes, dtype=object)[best], pa.string())


def _count_matrix(owner: np.ndarray, sids: np.ndarray, n: int, n_codes: int) -> np.ndarray:
    """(n, n_codes) counts of script ids ``sids`` per owner (an index below n)."""
    return np.bincount(owner * n_codes + sids, minlength=n * n_codes).reshape(n, n_codes)


def span_scripts(text: str, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Majority script of each of the ordered, disjoint, non-empty slices [start, end) of
    ``text``, as ``majority_scripts`` of the slices gives it, without building them: an
    index into the script codes per slice, and the codes."""
    table, codes = _script_table()
    n = len(starts)
    if n == 0:
        return np.zeros(0, np.int64), codes
    sids = table[np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)].astype(np.int16)
    bearing = sids >= _NEUTRAL
    none_low, none_high = np.int16(len(codes)), np.int16(-1)  # what a slice without script gets
    bounds = np.empty(2 * n, np.int64)
    bounds[0::2], bounds[1::2] = starts, ends  # reduceat's odd results (the gaps) are not used
    # one sentinel past the end: a slice may end where the text does
    low = np.minimum.reduceat(np.append(np.where(bearing, sids, none_low), none_low), bounds)[0::2]
    high = np.maximum.reduceat(np.append(np.where(bearing, sids, none_high), none_high), bounds)[0::2]
    best = np.where(low == high, low, 0).astype(np.int64)  # one script; none: Zyyy
    mixed = np.flatnonzero((low < high))
    if len(mixed):
        sizes = (ends[mixed] - starts[mixed]).astype(np.int64)
        owner = np.repeat(np.arange(len(mixed)), sizes)
        position = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes) + np.repeat(starts[mixed], sizes)
        keep = bearing[position]
        best[mixed] = _count_matrix(owner[keep], sids[position[keep]], len(mixed), len(codes)
                                    ).argmax(axis=1)
    return best, codes


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


# --- writing systems: scripts that belong together ------------------------------------------
# Japanese is written in Han + Hiragana + Katakana (ISO 15924 "Jpan"), Korean in Hangul +
# Han ("Kore"): counted as separate Unicode scripts, a few Latin words outvote them.
LATIN = "Latn"
NON_LATIN_MIN_SHARE = 0.2  # a non-Latin script with this share of the letters beats Latin


def _bearing_scripts(texts: pa.Array) -> tuple[np.ndarray, np.ndarray, int]:
    """The script-bearing characters (not Common/Inherited/Unknown) of all texts, in
    order: the text each is in and its script's index into the codes; and the text count."""
    table, _ = _script_table()
    texts = texts.cast(pa.large_string()) if pa.types.is_string(texts.type) else texts
    texts = pc.fill_null(texts, "")
    n = len(texts)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0
    cps = np.frombuffer(_joined(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
    sids = table[cps]
    bearing = sids >= _NEUTRAL
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths)[bearing]
    return rows, sids[bearing].astype(np.int64), n


def script_counts(texts: pa.Array) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per text, how many characters of each script it has (Common/Inherited/Unknown
    not counted): an (n, scripts) int array and the script codes of its columns."""
    _, codes = _script_table()
    rows, sids, n = _bearing_scripts(texts)
    if n == 0:
        return np.zeros((0, len(codes)), np.int64), codes
    counts = _count_matrix(rows, sids, n, len(codes))
    counts[:, :_NEUTRAL] = 0
    return counts, codes


@functools.cache
def _grouped_codes() -> tuple[tuple[str, ...], np.ndarray, dict[str, int]]:
    """Codes of the grouped count matrix (Unicode scripts + Jpan + Kore), and where each is."""
    _, codes = _script_table()
    grouped = codes + ("Jpan", "Kore")
    return grouped, np.asarray(grouped, dtype=object), {c: i for i, c in enumerate(grouped)}


def group_scripts(counts: np.ndarray) -> np.ndarray:
    """Counts per writing system: Han with kana is Jpan, Han with Hangul is Kore
    (their parts' columns then count 0); Han alone stays Hani (Chinese)."""
    grouped, _, at = _grouped_codes()
    out = np.zeros((counts.shape[0], len(grouped)), np.int64)
    out[:, :counts.shape[1]] = counts
    hani, hira, kana, hang = (out[:, at[c]].copy() for c in ("Hani", "Hira", "Kana", "Hang"))
    japanese = (hira + kana) > 0
    korean = ~japanese & (hang > 0)
    out[japanese, at["Jpan"]] = (hani + hira + kana)[japanese]
    out[korean, at["Kore"]] = (hani + hang)[korean]
    for c in ("Hani", "Hira", "Kana"):
        out[japanese, at[c]] = 0
    for c in ("Hani", "Hang"):
        out[korean, at[c]] = 0
    return out


def writing_systems(texts: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Each text's writing system (ISO 15924) and its grouped script counts.

    The majority of script-bearing characters, with Jpan/Kore grouping, except that a
    non-Latin script holding at least ``NON_LATIN_MIN_SHARE`` of the letters wins over
    Latin: Latin runs inside a non-Latin text are usually code, identifiers, key or
    product names. No script-bearing character: ``Zyyy``.
    """
    counts = group_scripts(script_counts(texts)[0])
    _, names, at = _grouped_codes()
    n = counts.shape[0]
    if n == 0:
        return pa.array([], pa.string()), counts
    total = counts.sum(axis=1)
    best = counts.argmax(axis=1)
    non_latin = counts.copy()
    non_latin[:, at[LATIN]] = 0
    best_non_latin = non_latin.argmax(axis=1)
    share = non_latin[np.arange(n), best_non_latin] / np.maximum(total, 1)
    best = np.where((best == at[LATIN]) & (share >= NON_LATIN_MIN_SHARE), best_non_latin, best)
    best[total == 0] = 0  # Zyyy
    return pa.array(names[best], pa.string()), counts


def script_shares(counts: np.ndarray, row: int, scripts: frozenset[str]) -> float:
    """Share of row ``row``'s letters written in any of ``scripts`` (grouped codes)."""
    _, _, at = _grouped_codes()
    total = counts[row].sum()
    if total == 0:
        return 0.0
    return float(sum(counts[row, at[s]] for s in scripts if s in at)) / float(total)
