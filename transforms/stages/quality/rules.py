"""Quality rules: measurements and verdicts for a batch of texts. No Beam.

Words are whitespace tokens (Unicode whitespace) holding at least one letter, mark or
digit (so "—" and "|" are not words, "42" is). A word's length counts its letters,
marks and digits after NFC: code points as in Gopher, less punctuation; marks count
because Indic vowel signs are part of a word (the demo's Hindi words average 2 letters
without them).

Per-word counts are vectorised: Arrow splits the batch, a code point -> category
table (numpy, built once per process) counts letters and digits, Arrow's RE2 counts
'#' and line breaks. Line and n-gram statistics are per-row Python, only for rows
that still stand and have enough lines or words for the rule to apply.

The project's offset tokenizer (``text.tokens``) is not used: it splits Maltese
"il-kelb" in two and builds a tuple per token, and Gopher's statistics are over
whitespace words anyway.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import regex

from xlcorpus.transforms.stages.quality.options import RULE_ORDER, Rule

# RE2 patterns (Arrow). A Unicode class costs RE2 ~5 ms to compile, per call: letters and
# digits are counted with the code point table instead; EDGE_PUNCT runs only when a rule
# needs normalised words (stop words, n-grams).
GOPHER_SYMBOLS = r"#|\.\.\.|…"  # Gopher's symbol-to-word ratio: hash and ellipsis
LINE_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x{85}\x{2028}\x{2029}]"  # what str.splitlines splits on
EDGE_PUNCT = r"^[\pP\pS]+|[\pP\pS]+$"  # "Home?" and "home" are one word for n-grams and stop words

# Python `regex` for lines (Sentence_Terminal: . ! ? 。 । ؟ ። ။ ។ and the rest of Unicode's).
# Bullets: the punctuation ones by name (no category holds just them; "—" opens dialogue
# lines in Russian or Spanish, so it is not one), the symbol ones (● ■ ▪ ► ✓ ➢, emoji) by \p{So}.
BULLET = regex.compile(r"^(?:[-*+•‣⁃◦∙·]|\p{So})")
ELLIPSIS_END = regex.compile(r"(?:\.\.\.|…)$")
PUNCT_END = regex.compile(r"(?:\p{Sentence_Terminal}|…)[\p{Pe}\p{Pf}\"'»]*$")

LINE_RULES = ("bullet_lines", "ellipsis_lines", "lines_end_punctuation", "duplicate_lines", "duplicate_line_chars")
NGRAM_RULES = ("top_ngram_fraction", "duplicate_ngram_fraction")


class Failure(NamedTuple):
    """The first rule a row fails: its measured value, the threshold crossed, extras
    (``bound`` min/max, ``unit``, ``n`` of an n-gram rule)."""

    rule: str
    value: float
    threshold: float
    extra: dict


LETTER, MARK_OR_DIGIT = 1, 2  # code point classes; 0: anything else


@functools.cache
def _char_classes() -> np.ndarray:
    """Code point -> LETTER (\\p{L}), MARK_OR_DIGIT (\\p{M}, \\p{N}) or 0; built once per
    process with `regex` (~0.3 s), like ``text.scripts``' script table."""
    table = np.zeros(0x110000, np.uint8)
    positions = np.arange(0x110000, dtype=np.uint32)
    positions = positions[(positions < 0xD800) | (positions > 0xDFFF)]
    every = positions.tobytes().decode("utf-32-le")
    for value, pattern in ((MARK_OR_DIGIT, r"[\p{M}\p{N}]+"), (LETTER, r"\p{L}+")):
        for m in regex.finditer(pattern, every):
            table[positions[m.start():m.end()]] = value
    return table


def _joined(strings: pa.Array) -> str:
    """All strings of a (possibly sliced) string array as one str, without per-string Python."""
    offsets = np.frombuffer(strings.buffers()[1], np.int32)[strings.offset: strings.offset + len(strings) + 1]
    data = strings.buffers()[2]
    return "" if data is None or not len(strings) else data.to_pybytes()[offsets[0]:offsets[-1]].decode("utf-8")


def _per_token(tokens: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(letters, letters + marks + digits) of each string, by the code point table."""
    tokens = tokens.cast(pa.string())
    lengths = pc.fill_null(pc.utf8_length(tokens), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    joined = _joined(tokens)
    classes = _char_classes()[np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), np.uint32)]
    owner = np.repeat(np.arange(len(tokens)), lengths)
    n = len(tokens)
    return (np.bincount(owner[classes == LETTER], minlength=n),
            np.bincount(owner[classes > 0], minlength=n))


class Measures(NamedTuple):
    """Per-row counts of a batch (numpy arrays of length n) plus its words."""

    texts: pa.Array  # trimmed, NFC
    n_words: np.ndarray
    n_chars: np.ndarray  # letters, marks and digits (all in words: other tokens are punctuation and symbols)
    alpha: np.ndarray  # words with a letter
    symbols: np.ndarray
    lines: np.ndarray  # line breaks + 1 (blank lines included: an upper bound)
    raw_words: pa.Array  # every word as written, in row order
    word_parent: np.ndarray  # row of each word
    word_offsets: np.ndarray  # words of row i: words[word_offsets[i]:word_offsets[i + 1]]

    def words(self) -> pa.Array:
        """The words lower-cased, edge punctuation stripped (computed when a rule needs them)."""
        return pc.utf8_lower(pc.replace_substring_regex(self.raw_words, EDGE_PUNCT, ""))


def nfc(texts: pa.Array) -> pa.Array:
    """NFC in Python: pyarrow 25's ``utf8_normalize(form="NFC")`` returns decomposed text
    (measured: "é" comes back as e + U+0301). Unchanged texts keep their buffer."""
    values = texts.to_pylist()
    if all(unicodedata.is_normalized("NFC", t) for t in values):
        return texts
    return pa.array([unicodedata.normalize("NFC", t) for t in values], pa.string())


def measure(texts: pa.Array) -> Measures:
    n = len(texts)
    texts = nfc(pc.utf8_trim_whitespace(pc.fill_null(texts, "")))
    tokens = pc.utf8_split_whitespace(texts)
    flat = pc.list_flatten(tokens)
    parent = pc.list_parent_indices(tokens).to_numpy()
    letters, chars = _per_token(flat)
    is_word = chars > 0
    word_parent = parent[is_word]

    def count(pattern: str) -> np.ndarray:
        return pc.count_substring_regex(texts, pattern).to_numpy(zero_copy_only=False).astype(np.int64)

    n_words = np.bincount(word_parent, minlength=n)
    return Measures(
        texts=texts, n_words=n_words, n_chars=np.bincount(parent, weights=chars, minlength=n).astype(np.int64),
        alpha=np.bincount(parent[letters > 0], minlength=n), symbols=count(GOPHER_SYMBOLS),
        lines=count(LINE_BREAK) + 1, raw_words=flat.filter(pa.array(is_word)), word_parent=word_parent,
        word_offsets=np.concatenate([[0], np.cumsum(n_words)]))


# --- per-row statistics ----------------------------------------------------------------
class LineStats(NamedTuple):
    lines: int  # non-blank lines
    bullet_lines: float  # fraction starting with a bullet
    ellipsis_lines: float  # fraction ending with an ellipsis
    lines_end_punctuation: float  # fraction ending in terminal punctuation (closing quotes allowed)
    duplicate_lines: float  # fraction of lines repeating an earlier line
    duplicate_line_chars: float  # fraction of line characters in such repeats


def line_stats(text: str) -> LineStats:
    lines = [line for line in (raw.strip() for raw in text.splitlines()) if line]
    if not lines:
        return LineStats(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    seen: set[str] = set()
    dup = dup_chars = chars = 0
    for line in lines:
        chars += len(line)
        if line in seen:
            dup += 1
            dup_chars += len(line)
        seen.add(line)
    k = len(lines)
    return LineStats(k, sum(bool(BULLET.match(line)) for line in lines) / k,
                     sum(bool(ELLIPSIS_END.search(line)) for line in lines) / k,
                     sum(bool(PUNCT_END.search(line)) for line in lines) / k, dup / k, dup_chars / chars)


def top_ngram_fractions(words: Sequence[str], ns: Sequence[int]) -> dict[int, float]:
    """Gopher: per n, the share of word characters in the most frequent n-gram (all
    its occurrences). An n-gram seen once is not repetition: 0. Smallest n first: if
    no n-gram repeats, no longer one does."""
    total = sum(map(len, words))
    out = dict.fromkeys(ns, 0.0)
    for n in sorted(ns):
        if total == 0 or len(words) < n:
            break
        gram, times = Counter(zip(*(words[i:] for i in range(n)))).most_common(1)[0]
        if times < 2:
            break
        out[n] = times * sum(map(len, gram)) / total
    return out


def duplicate_ngram_fractions(words: Sequence[str], ns: Sequence[int]) -> dict[int, float]:
    """Gopher: per n, the share of word characters inside repeated n-grams (the second
    and later occurrences; a character in overlapping repeats counts once)."""
    total = sum(map(len, words))
    out = dict.fromkeys(ns, 0.0)
    for n in sorted(ns):
        if total == 0 or len(words) < n:
            break
        seen: set[tuple[str, ...]] = set()
        covered = np.zeros(len(words), bool)
        for i, gram in enumerate(zip(*(words[j:] for j in range(n)))):
            if gram in seen:
                covered[i:i + n] = True
            else:
                seen.add(gram)
        if not covered.any():
            break
        out[n] = sum(len(w) for w, c in zip(words, covered) if c) / total
    return out


# --- verdicts ------------------------------------------------------------------------------
def evaluate(texts: pa.Array, group: np.ndarray, rulesets: Sequence[dict[str, Rule]]) -> list[Failure | None]:
    """The first failing rule of each row (None: kept), in ``RULE_ORDER``. Row i follows
    ``rulesets[group[i]]`` (its language's and script's rules)."""
    n = len(texts)
    if n == 0:
        return []
    m = measure(texts)
    out: list[Failure | None] = [None] * n
    alive = np.ones(n, bool)

    def param(rule: str, field: str) -> np.ndarray:
        return np.asarray([getattr(rs[rule], field) for rs in rulesets])[group]

    def reject(rule: str, failing: np.ndarray, values: np.ndarray, thresholds: np.ndarray, **extra):
        nonlocal alive
        for i in np.flatnonzero(failing & alive).tolist():
            out[i] = Failure(rule, float(values[i]), float(thresholds[i]),
                             {k: (v[i].item() if isinstance(v, np.ndarray) else v) for k, v in extra.items()})
        alive &= ~failing

    on = {rule: param(rule, "enabled").astype(bool) for rule in RULE_ORDER}
    words = np.maximum(m.n_words, 1)

    chars_unit = param("word_count", "unit") == "chars"
    size = np.where(chars_unit, m.n_chars, m.n_words)
    lo, hi = param("word_count", "min"), param("word_count", "max")
    reject("word_count", on["word_count"] & ((size < lo) | (size > hi)), size, np.where(size < lo, lo, hi),
           bound=np.where(size < lo, "min", "max"), unit=np.where(chars_unit, "chars", "words"))

    mean = m.n_chars / words
    lo, hi = param("mean_word_length", "min"), param("mean_word_length", "max")
    applies = on["mean_word_length"] & (m.n_words >= param("mean_word_length", "min_words"))
    reject("mean_word_length", applies & ((mean < lo) | (mean > hi)), mean, np.where(mean < lo, lo, hi),
           bound=np.where(mean < lo, "min", "max"))

    alpha = m.alpha / words
    lo = param("alpha_words", "min")
    reject("alpha_words", on["alpha_words"] & (m.n_words > 0) & (alpha < lo), alpha, lo)

    ratio = m.symbols / np.maximum(size, 1)
    hi = param("symbol_word_ratio", "max")
    applies = on["symbol_word_ratio"] & (m.symbols >= param("symbol_word_ratio", "min_symbols"))
    reject("symbol_word_ratio", applies & (ratio > hi), ratio, hi)

    hits = np.zeros(n, np.int64)
    listed = [g for g, rs in enumerate(rulesets) if rs["stop_words"].words]
    normalized = m.words() if listed else None
    for g in listed:
        in_list = pc.is_in(normalized, value_set=pa.array(rulesets[g]["stop_words"].words, pa.string()))
        mine = in_list.to_numpy(zero_copy_only=False) & (group[m.word_parent] == g)
        hits += np.bincount(m.word_parent[mine], minlength=n)
    has_list = np.isin(group, listed)
    need = np.minimum(param("stop_words", "min"), m.n_words // param("stop_words", "words_per_stop_word"))
    reject("stop_words", on["stop_words"] & has_list & (need > 0) & (hits < need), hits, need)

    _line_rules(m, group, rulesets, out, alive)
    _ngram_rules(m, normalized, group, rulesets, out, alive)
    return out


def _rows(m: Measures, candidates: np.ndarray) -> list[tuple[int, str]]:
    idx = np.flatnonzero(candidates)
    return list(zip(idx.tolist(), pc.take(m.texts, pa.array(idx, pa.int64())).to_pylist())) if len(idx) else []


def _line_rules(m: Measures, group: np.ndarray, rulesets, out: list, alive: np.ndarray) -> None:
    need = np.asarray([min((rs[r].min_lines for r in LINE_RULES if rs[r].enabled), default=1 << 30)
                       for rs in rulesets])
    for i, text in _rows(m, alive & (m.lines >= need[group])):
        stats, rules = line_stats(text), rulesets[group[i]]
        for rule in LINE_RULES:
            r = rules[rule]
            if not r.enabled or stats.lines < r.min_lines:
                continue
            value = getattr(stats, rule)
            low = rule == "lines_end_punctuation"
            if (value < r.min) if low else (value > r.max):
                out[i] = Failure(rule, value, r.min if low else r.max, {"lines": stats.lines})
                alive[i] = False
                break


def _ngram_rules(m: Measures, normalized: pa.Array | None, group: np.ndarray, rulesets, out: list,
                 alive: np.ndarray) -> None:
    need = np.asarray([min((rs[r].min_words for r in NGRAM_RULES if rs[r].enabled), default=1 << 62)
                       for rs in rulesets])
    measures = {"top_ngram_fraction": top_ngram_fractions, "duplicate_ngram_fraction": duplicate_ngram_fractions}
    rows = np.flatnonzero(alive & (m.n_words >= need[group])).tolist()
    if rows and normalized is None:
        normalized = m.words()
    for i in rows:
        start, stop = int(m.word_offsets[i]), int(m.word_offsets[i + 1])
        row, rules = normalized.slice(start, stop - start).to_pylist(), rulesets[group[i]]
        for rule in NGRAM_RULES:
            r = rules[rule]
            if not r.enabled or len(row) < r.min_words:
                continue
            fractions = measures[rule](row, list(r.max))
            bad = [(k, f) for k, f in fractions.items() if f > r.max[k]]
            if bad:
                k, f = bad[0]
                out[i] = Failure(rule, f, r.max[k], {"n": k})
                alive[i] = False
                break
