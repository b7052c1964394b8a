"""uroman romanization (any script -> Latin) with a character offset map, cached per token.

uroman romanizes a line through a lattice whose rules look at neighbouring characters,
so romanizing word by word can change the output (``（测试） 好``: ``(ceshi)  hao`` word by
word, ``(ceshi) hao`` as a line). ``Romanizer`` cuts a line only where the lattice
provably never looks across (see ``segments``), romanizes each distinct segment once
through an LRU cache, and stitches text and offsets back together. The result is
identical to ``uroman.Uroman().romanize_string(line)`` on the whole line, uncached; the
tests check that on real text in over 20 scripts and on thousands of generated lines.

Core only, no Beam: ``Romanizer`` (loads uroman lazily: ``uroman.Uroman`` cannot be
pickled and takes ~4 s to parse its tables, ~0.2 s from ``uroman_tables``' cache, so
the stage calls ``load()`` in ``setup``), ``segments``,
``map_span``.
"""

from __future__ import annotations

import gc
import operator
import re
import threading
from collections.abc import Sequence
from itertools import repeat
from typing import NamedTuple

import numpy as np

OFFSET_FIELDS = ("src_start", "src_end", "out_start", "out_end")  # columns of an offset map
DEFAULT_CACHE_SIZE = 1 << 18  # distinct (segment, lcode) pairs; ~1 KB each

# --- where a line may be cut ------------------------------------------------------------
# A segment is a run of non-space characters plus the ASCII spaces after it (leading
# spaces form their own segment). What uroman 1.3.1.1's Lattice reads around a position,
# and why a cut after a run of spaces changes none of it:
# - rule keys (multi-character rules, s-prefix scans in is_at_end_of_word, Thai vowel
#   patterns "x–yz"): the only key with a space is Ethiopic "፡ " -> ", "; it ends in the
#   space, which stays inside the segment.
# - the character after a segment: keeping the trailing spaces in the segment means every
#   segment but the last sees the same ' ' as in the line (the last sees the line's end).
#   This matters: rom.endswith(' ') is stripped only before ' ' ("）" -> ") "), Khmer
#   `next_s_char in "យ"` and capitalisation read the next character.
# - the character before a segment is ' ' in the line and '' (start) in the segment; every
#   test treats both alike: rom.startswith(' ') is stripped when `start == 0 or prev ==
#   ' '`; neither is a letter, virama, tsu, Thai pre-vowel, Braille capital, numeral or
#   minus sign; neither has a script name.
# - edges ending at the cut (is_at_start_of_word, number joining, F1 "·" cushions): no
#   rule covers ' ' alone and no number edge spans a space, so only "፡ " -> ", " can end
#   there, and its text does not end in a letter or digit.
# - line-wide state: Tibetan vowel picking works per syllable, which a space ends; Braille
#   is not local: all-caps (⠠⠠) and the number sign (⠼) carry across ASCII spaces, so a
#   line with any Braille cell is romanized whole.
# Uroman's own memos (abugida_cache, hangul_rom) give the same answers in any call order.
_SEGMENT = re.compile(r"[^ ]+ *| +")
_WHOLE_LINE = re.compile("[\u2800-\u28ff]")  # Braille Patterns


def segments(line: str) -> list[str]:
    """The pieces of ``line`` that uroman romanizes independently; they join to ``line``."""
    if _WHOLE_LINE.search(line):
        return [line]
    return _SEGMENT.findall(line)


# --- numbers: one uroman call per digit pattern ------------------------------------------
# A segment of ASCII digits and number punctuation (``2019``, ``12/5/2019``, ``37.42%``)
# is nearly always new (dates, amounts), so caching by segment does not help. But in
# uroman 1.3.1.1 nothing depends on which ASCII digit stands where: no rule key or
# prefix contains one (only ``num_props`` does: value d, base 1, script ascii-digit); the
# number passes D1 (digit runs, with one decimal point) and F1 (the "·" cushion) look at
# which characters are digits, not at their values; G1-G4 need a neighbour of base > 1 or
# a large power, which no ASCII character has; G5/G6 need CJK connectors and signs; the
# single-character exception needs a value > 1000. So such a segment romanizes exactly as
# its digit pattern does (every digit 1-9 replaced by "1"; 0 kept, as extra margin), with
# the same edges; when that pattern comes out unchanged (each edge's text is its source),
# the segment comes out unchanged too. Patterns that do not are romanized as they are.
_NUMBER = re.compile(r"[0-9.,/:%+-]*[0-9][0-9.,/:%+-]* *")
_DIGIT_PATTERN = str.maketrans("123456789", "111111111")


# --- the romanizer -------------------------------------------------------------------------
class RomanizedText(NamedTuple):
    text: str
    offsets: np.ndarray  # (n_edges, 4) int32: OFFSET_FIELDS, in characters (code points)


class CacheInfo(NamedTuple):
    hits: int  # segments answered from the cache (a number by its digit pattern included)
    misses: int  # segments romanized by uroman
    maxsize: int | None
    currsize: int


class _Piece(NamedTuple):
    """A romanized segment: its text; as int32 bytes (a batch's are joined at once, no
    Python per segment) its offsets from 0 and (edge count, segment length, text length);
    whether every edge's text is its own source (then a number with this digit pattern
    romanizes to itself)."""
    text: str
    offsets: bytes
    sizes: bytes
    unchanged: bool


_TEXT, _OFFSETS, _SIZES = (operator.itemgetter(k) for k in range(3))
_LINE_END = _Piece("\n", b"", np.zeros(3, np.int32).tobytes(), False)  # closes each line's pieces


_EMPTY = np.zeros((0, 4), np.int32)
_EMPTY.flags.writeable = False
_UROMAN = None
_UROMAN_LOCK = threading.Lock()


def shared_uroman():
    """The process's one ``uroman.Uroman`` (uncached), loaded on first use (see
    ``uroman_tables``: ~0.2 s once the machine's table cache holds it, ~4 s before).

    Sharing is safe: after loading, uroman only fills memo dicts whose values do not
    depend on call order, and the per-line lattice is a fresh object per call.
    """
    global _UROMAN
    with _UROMAN_LOCK:
        if _UROMAN is None:
            from xlcorpus.transforms.stages.transliterate.uroman_tables import load_uroman

            _UROMAN = load_uroman()  # parsed once per machine, then from the table cache
            # uroman's tables are ~100k long-lived objects that every full garbage collection
            # would walk again (a batch's tokens and edges trigger many): move everything alive
            # now out of the collector's generations (what gc.freeze is for), after a collection
            # so that no garbage is kept. 1.5x the stage's lines/s.
            gc.collect()
            gc.freeze()
        return _UROMAN


def _table_key(segment: str) -> tuple[int, str]:
    """Where a segment is cached: one that ends in exactly one space under its word in the
    first table (a line split at its spaces looks those up with no string built), any
    other as it is in the second."""
    if segment[-1:] == " " and segment[-2:-1] not in (" ", ""):
        return 0, segment[:-1]
    return 1, segment


_NO_TABLES: tuple[dict, dict] = ({}, {})  # never written to


class Romanizer:
    """uroman with per-segment caching and offset maps; picklable, loaded lazily.

    ``lcode`` (ISO 639-3, e.g. ``"san"``) is the default language hint; ``romanize_batch``
    takes one per line too. ``cache_size`` bounds the cache of segments (None:
    unbounded, 0: no cache). The cache keeps two generations (a full young one becomes
    the old one, the previous old one is dropped, a segment found in the old one moves
    back): frequent segments stay, at most ``cache_size`` are held, and a lookup is one
    dict probe (an LRU's bookkeeping per segment cost as much as the rest of the line).
    """

    def __init__(self, cache_size: int | None = DEFAULT_CACHE_SIZE, lcode: str | None = None):
        self.cache_size = cache_size
        self.lcode = lcode
        self._uroman = None
        # young generation: lcode -> (tables of _table_key) -> {key: _Piece}; None until load()
        self._cached: dict[str | None, tuple[dict[str, _Piece], dict[str, _Piece]]] | None = None
        self._old: dict[str | None, tuple[dict[str, _Piece], dict[str, _Piece]]] = {}
        self._young_size = 0
        self._patterns: dict[tuple[str, str | None], _Piece] = {}  # (digit pattern, lcode) -> piece
        self._hits = self._misses = 0

    def __getstate__(self) -> dict:
        return {"cache_size": self.cache_size, "lcode": self.lcode}  # uroman stays behind

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def load(self) -> Romanizer:
        """Load uroman now (DoFn.setup) rather than on the first line."""
        if self._cached is None:
            self._uroman = shared_uroman()
            self._cached = {}
        return self

    def cache_info(self) -> CacheInfo:
        self.load()
        size = self._young_size + sum(len(a) + len(b) for a, b in self._old.values()) + len(self._patterns)
        return CacheInfo(self._hits, self._misses, self.cache_size, size)

    def _romanize_piece(self, piece: str, lcode: str | None) -> _Piece:
        """uroman's best edge path for one piece (text, read-only offsets from 0)."""
        from uroman import RomFormat

        self._misses += 1
        edges = self._uroman.romanize_string(piece, lcode=lcode, rom_format=RomFormat.EDGES)
        rows, texts, out, same = [], [], 0, True
        for e in edges:
            rows.append((e.start, e.end, out, out + len(e.txt)))
            texts.append(e.txt)
            out += len(e.txt)
            same = same and e.txt == piece[e.start:e.end]
        text = "".join(texts)
        sizes = np.array([len(rows), len(piece), len(text)], np.int32).tobytes()
        return _Piece(text, np.array(rows, np.int32).tobytes(), sizes, same and text == piece)

    def _cached_piece(self, segment: str, lcode: str | None) -> _Piece | None:
        """The cached piece of ``segment``, from either generation (an old one moves back)."""
        table, key = _table_key(segment)
        piece = self._cached.get(lcode, _NO_TABLES)[table].get(key)
        if piece is None and (piece := self._old.get(lcode, _NO_TABLES)[table].get(key)) is not None:
            self._remember(segment, lcode, piece)
        return piece

    def _remember(self, segment: str, lcode: str | None, piece: _Piece) -> None:
        if self.cache_size == 0:
            return
        if self.cache_size is not None and self._young_size >= max(1, self.cache_size // 2):
            self._old, self._cached, self._young_size = self._cached, {}, 0
        tables = self._cached.get(lcode)
        if tables is None:
            tables = self._cached[lcode] = ({}, {})
        table, key = _table_key(segment)
        tables[table][key] = piece
        self._young_size += 1

    def _number_piece(self, segment: str, lcode: str | None) -> _Piece | None:
        """A number segment through its digit pattern (None: romanize it as it is)."""
        key = (segment.translate(_DIGIT_PATTERN), lcode)
        if (shape := self._patterns.get(key)) is None:
            try:
                shape = self._romanize_piece(key[0], lcode)
            except Exception:  # the segment itself then goes to uroman, failing (or not) on its own
                return None
            if self.cache_size != 0:
                if self.cache_size is not None and len(self._patterns) >= self.cache_size:
                    self._patterns.clear()
                self._patterns[key] = shape
        # not cached: numbers rarely repeat
        return _Piece(segment, shape.offsets, shape.sizes, True) if shape.unchanged else None

    def _piece(self, segment: str, lcode: str | None) -> _Piece:
        """A segment the young generation does not hold: by its digit pattern, from the old
        generation, or from uroman."""
        if _NUMBER.fullmatch(segment) and (piece := self._number_piece(segment, lcode)) is not None:
            return piece
        if (piece := self._cached_piece(segment, lcode)) is not None:
            return piece
        piece = self._romanize_piece(segment, lcode)
        self._remember(segment, lcode, piece)
        return piece

    def romanize(self, line: str, lcode: str | None = None) -> RomanizedText:
        texts, offsets = self.romanize_batch([line], None if lcode is None else [lcode])
        return RomanizedText(texts[0], offsets[0])

    def romanize_batch(self, lines: Sequence[str], lcodes: Sequence[str | None] | None = None,
                       errors: str = "raise") -> tuple[list[str | None], list[np.ndarray | None]]:
        """Romanize many lines: (texts, offset maps), one each per line.

        Each line's segments are looked up in one pass over the cache (a line with single
        spaces only: by its words, split at the spaces); the texts of all lines are joined
        and the offsets shifted in one pass each. A line uroman fails on raises
        (``errors="raise"``, with the row in the note) or gets None text and offsets
        (``errors="null"``), so a stage can dead-letter it.
        """
        if errors not in ("raise", "null"):
            raise ValueError(f"errors must be 'raise' or 'null', not {errors!r}")
        self.load()
        pieces: list[_Piece] = []  # every line's segments and a _LINE_END, in order
        per_line: list[int] = []  # pieces per line (failed lines have none)
        failed: list[int] = []  # rows uroman failed on
        misses = self._misses
        braille = _WHOLE_LINE.search("".join(lines)) is not None  # a Braille line is romanized whole
        codes = repeat(self.lcode) if lcodes is None else (self.lcode if c is None else c for c in lcodes)
        for row, (line, lcode) in enumerate(zip(lines, codes)):
            spaced, other = self._cached.get(lcode, _NO_TABLES)
            if (line[:1] not in (" ", "") and line[-1] != " " and "  " not in line
                    and not (braille and _WHOLE_LINE.search(line))):
                words = line.split(" ")  # the segments are "word " ... "word"
                last = words.pop()
                found = list(map(spaced.get, words))
                found.append(other.get(last))
                parts = None
            else:
                parts = segments(line)
                found = [(spaced, other)[t].get(k) for t, k in map(_table_key, parts)]
            if None in found:
                try:
                    for k, piece in enumerate(found):
                        if piece is None:
                            segment = parts[k] if parts is not None else words[k] + " " if k < len(words) else last
                            found[k] = self._piece(segment, lcode)
                except Exception:  # whole line wins; if it fails too, so does the row
                    try:
                        found = [self._piece(line, lcode)]
                    except Exception as exc:
                        if errors == "raise":
                            exc.add_note(f"uroman failed on row {row}: {line!r}")
                            raise
                        failed.append(row)
                        continue
            pieces += found
            pieces.append(_LINE_END)
            per_line.append(len(found) + 1)
        self._hits += len(pieces) - len(per_line) - (self._misses - misses)  # segments not sent to uroman
        # the texts of all lines in one join, cut at the line ends (unless a text has a newline)
        joined = "".join(map(_TEXT, pieces))
        texts = joined.split("\n")[:-1] if joined.count("\n") == len(per_line) else _texts_by_line(pieces, per_line)
        offsets = _line_offsets(pieces, per_line)
        for row in failed:
            texts.insert(row, None)
            offsets.insert(row, None)
        return texts, offsets


def _texts_by_line(pieces: list[_Piece], per_line: list[int]) -> list[str]:
    ends = np.cumsum(per_line).tolist()
    return ["".join(map(_TEXT, pieces[e - n:e - 1])) for e, n in zip(ends, per_line)]


def _line_offsets(pieces: list[_Piece], per_line: list[int]) -> list[np.ndarray]:
    """Join the segments' local offsets, shift them into line coordinates (each segment by
    the source and output lengths of the segments before it on its line), and cut the
    result into one (view) array per line."""
    n = len(pieces)
    if n == 0:
        return []
    local = np.frombuffer(b"".join(map(_OFFSETS, pieces)), np.int32).reshape(-1, 4)
    sizes = np.frombuffer(b"".join(map(_SIZES, pieces)), np.int32).reshape(n, 3).astype(np.int64)
    edges, src, out = sizes[:, 0], sizes[:, 1], sizes[:, 2]
    counts = np.array(per_line, np.int64)
    first = np.repeat(np.cumsum(counts) - counts, counts)  # each piece's line's first piece
    src_before, out_before = np.cumsum(src) - src, np.cumsum(out) - out
    shift = np.empty((n, 4), np.int32)
    shift[:, 0] = shift[:, 1] = src_before - src_before[first]
    shift[:, 2] = shift[:, 3] = out_before - out_before[first]
    flat = local + np.repeat(shift, edges, axis=0)
    ends = np.r_[0, np.cumsum(edges)][np.r_[0, np.cumsum(counts)]].tolist()
    return [flat[a:b] for a, b in zip(ends, ends[1:])]


# --- spans -------------------------------------------------------------------------------
def map_span(offsets: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """Map the original character span [start, end) onto the romanized text.

    Each boundary must fall on an edge boundary, or inside an edge whose source and
    output have the same length (digits, kept characters: they correspond one to one).
    Inside a rewritten edge (``五百`` -> ``500``) there is no honest answer: None. An
    empty span, or one that romanizes to nothing, is None too.
    """
    if start >= end or len(offsets) == 0:
        return None
    src_s, src_e = offsets[:, 0], offsets[:, 1]
    i = int(np.searchsorted(src_e, start, side="right"))  # first edge ending after start
    j = int(np.searchsorted(src_e, end, side="left"))  # first edge ending at or after end
    if i >= len(offsets) or j >= len(offsets) or src_s[i] > start or src_s[j] >= end:
        return None  # outside the text, or in a gap between edges
    new_start = _boundary(offsets[i], start, at_end=False)
    new_end = _boundary(offsets[j], end, at_end=True)
    if new_start is None or new_end is None or new_end <= new_start:
        return None
    return new_start, new_end


def _boundary(edge: np.ndarray, pos: int, at_end: bool) -> int | None:
    s, e, o_s, o_e = (int(x) for x in edge)
    if pos == (e if at_end else s):
        return o_e if at_end else o_s
    if e - s == o_e - o_s:
        return o_s + (pos - s)
    return None
