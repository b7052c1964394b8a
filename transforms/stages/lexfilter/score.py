"""Sentence scores and the keep/reject decisions of the lexical filter (no Beam), and
the language-distance report.

``SentenceScorer`` turns texts into distances to the target lexicon (lower = closer);
``filter_batch`` is the one-pass threshold decision; ``score_and_annotate`` and
``select`` are the two halves of the keep_fraction passes, with the cut score taken
from ``cut_from_quantiles``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from xlcorpus.schemas import LEXFILTER_FIELDS
from xlcorpus.transforms.core.accounting import rejected_rows
from xlcorpus.transforms.stages.lexfilter.index import DEFAULT_MAX_DELETES
from xlcorpus.transforms.stages.lexfilter.lexicon import Lexicon
from xlcorpus.transforms.stages.lexfilter.profile import NgramProfile, word_ngrams
from xlcorpus.transforms.stages.lexfilter.tokens import token_rows, tokenize_batch

STAGE = "lexfilter"
NO_WORDS, LEXICALLY_DISTANT = "no_words", "lexically_distant"
METRICS = ("levenshtein", "ngram_cosine", "ngram_out_of_place")
WEIGHTINGS = ("none", "length")


class SentenceScorer:
    """Scores texts against a lexicon (lower = closer to the target language).

    ``levenshtein``: each word token's normalised Levenshtein distance to its nearest
    lexicon word, averaged over the sentence's tokens (repeats count each time).
    ``weighting="length"`` weights each token by its length in characters, so the score
    is the share of the sentence's letters that would have to change: one- to three-
    letter function words, whose distances are coarse (0, 1/3, 1/2, 1) and find a near
    neighbour in any lexicon by chance, then count less than the content words that
    carry the lexical signal. ``"none"`` is the plain mean the paper uses.

    ``ngram_cosine`` / ``ngram_out_of_place``: the sentence's character n-gram profile
    (see ``word_ngrams``, top ``profile_size``) against the lexicon's, as cosine
    distance or Cavnar & Trenkle out-of-place distance in [0, 1]; ``weighting`` does not
    apply.

    ``max_word_distance`` / ``max_word_edits`` cap the word distances (see
    ``NearestWordIndex``: a word with no lexicon word within the cap counts as 1.0).

    A text with no word scores NaN.
    """

    def __init__(self, lexicon: Lexicon, metric: str = "levenshtein", weighting: str = "none",
                 profile_size: int = 400, max_deletes: int = DEFAULT_MAX_DELETES, memo_size: int = 0,
                 max_word_distance: float | None = None, max_word_edits: int | None = None):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.lexicon, self.metric, self.weighting, self.profile_size = lexicon, metric, weighting, profile_size
        if metric == "levenshtein":
            self.index = lexicon.index(max_deletes=max_deletes, memo_size=memo_size,
                                       max_distance=max_word_distance, max_edits=max_word_edits)
        else:
            self.reference = lexicon.profile(profile_size)

    def score(self, texts: pa.Array | Sequence[str | None]) -> np.ndarray:
        n = len(texts)
        if self.metric == "levenshtein":  # means need no token order
            return self._levenshtein(*token_rows(texts, self.lexicon.lowercase, self.lexicon.fold_diacritics), n)
        return self._ngram(*tokenize_batch(texts, self.lexicon.lowercase, self.lexicon.fold_diacritics), n)

    def _levenshtein(self, tokens: pa.Array, rows: np.ndarray, n: int) -> np.ndarray:
        dist = self.index.nearest_distance(tokens).astype(np.float64)
        weights = (pc.utf8_length(tokens).to_numpy(zero_copy_only=False).astype(np.float64)
                   if self.weighting == "length" else np.ones(len(dist)))
        total = np.bincount(rows, weights * dist, minlength=n)
        norm = np.bincount(rows, weights, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (total / norm).astype(np.float32)  # 0/0 -> NaN: no words

    def _ngram(self, tokens: pa.Array, rows: np.ndarray, n: int) -> np.ndarray:
        out = np.full(n, np.nan, np.float32)
        words = tokens.to_pylist()
        grams_of: dict[str, list[str]] = {}
        bounds = np.searchsorted(rows, np.arange(n + 1))
        for r in np.unique(rows).tolist():
            counts: Counter[str] = Counter()
            for w in words[bounds[r]:bounds[r + 1]]:
                g = grams_of.get(w)
                if g is None:
                    g = grams_of[w] = word_ngrams(w)
                counts.update(g)
            profile = NgramProfile.from_counts(counts, self.profile_size)
            out[r] = (profile.cosine_distance(self.reference) if self.metric == "ngram_cosine"
                      else profile.out_of_place(self.reference))
        return out


class LexFilterConfigError(ValueError):
    """A configuration problem seen only at run time (fails the run, not a row)."""


def score_batch(batch: pa.RecordBatch, scorer: SentenceScorer, langs: Sequence[str] = ()
                ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, applies): float32 scores (NaN for no words and for rows not scored) and
    which rows the filter applies to (``lang`` in ``langs``, or every row if empty)."""
    n = batch.num_rows
    if langs:
        if "lang" not in batch.schema.names:
            raise LexFilterConfigError("lexfilter.langs is set but the rows have no 'lang' column "
                                       "(run language identification first)")
        applies = pc.fill_null(pc.is_in(batch.column("lang"), pa.array(list(langs), pa.string())), False)
        applies = applies.to_numpy(zero_copy_only=False)
    else:
        applies = np.ones(n, bool)
    scores = np.full(n, np.nan, np.float32)
    if applies.all():
        scores[:] = scorer.score(batch.column("text"))
    elif applies.any():
        idx = np.flatnonzero(applies)
        scores[idx] = scorer.score(batch.column("text").take(pa.array(idx)))
    return scores, applies


def annotate(batch: pa.RecordBatch, scores: np.ndarray, applies: np.ndarray, metric: str) -> pa.RecordBatch:
    """``batch`` plus LEXFILTER_FIELDS (null on rows the filter does not apply to)."""
    distance = pa.array(scores, pa.float32(), mask=~applies)
    names = pa.array(np.where(applies, metric, None), pa.string())
    return batch.append_column(LEXFILTER_FIELDS[0], distance).append_column(LEXFILTER_FIELDS[1], names)


def select(scored: pa.RecordBatch, cut: float | None, metric: str, fraction: float | None = None
           ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """Split an annotated batch: rows with lex_distance > cut are rejected as
    ``lexically_distant``; unscored rows (null lex_distance) pass. ``cut`` None keeps all."""
    if cut is None:
        return scored, None
    dist = scored.column("lex_distance")
    far = pc.fill_null(pc.greater(dist, pa.scalar(cut, pa.float32())), False).to_numpy(zero_copy_only=False)
    if not far.any():
        return scored, None
    rows = np.flatnonzero(far)
    values = dist.to_numpy(zero_copy_only=False)
    details = []
    for i in rows.tolist():
        d = {"lex_distance": round(float(values[i]), 6), "threshold": round(float(cut), 6), "metric": metric}
        if fraction is not None:
            d["keep_fraction"] = fraction
        details.append(d)
    return scored.filter(pa.array(~far)), rejected_rows(scored, rows, [LEXICALLY_DISTANT] * rows.size, details,
                                                        STAGE)


def score_and_annotate(batch: pa.RecordBatch, scorer: SentenceScorer, metric: str, langs: Sequence[str] = ()
                       ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """Pass 1: (annotated rows that have words or are not scored, rejected ``no_words`` rows)."""
    scores, applies = score_batch(batch, scorer, langs)
    empty = applies & np.isnan(scores)
    annotated = annotate(batch, scores, applies, metric)
    if not empty.any():
        return annotated, None
    rows = np.flatnonzero(empty)
    return (annotated.filter(pa.array(~empty)),
            rejected_rows(batch, rows, [NO_WORDS] * rows.size, [{"metric": metric}] * rows.size, STAGE))


def filter_batch(batch: pa.RecordBatch, scorer: SentenceScorer, threshold: float, metric: str,
                 langs: Sequence[str] = ()) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """Absolute threshold in one pass: (kept rows with LEXFILTER_FIELDS, rejected rows or None)."""
    annotated, no_words = score_and_annotate(batch, scorer, metric, langs)
    kept, far = select(annotated, threshold, metric)
    parts = [r for r in (no_words, far) if r is not None]
    return kept, (parts[0] if len(parts) == 1 else pa.concat_batches(parts) if parts else None)


def cut_from_quantiles(quantiles: Sequence[float], fraction: float) -> float | None:
    """The score at ``fraction`` of the sorted scores, from evenly spaced quantiles
    (min ... max); None when nothing was scored."""
    if not quantiles:
        return None
    return float(quantiles[min(len(quantiles) - 1, round(fraction * (len(quantiles) - 1)))])


# --- language distance report ------------------------------------------------------------------
def language_distances(target: Lexicon, sources: Mapping[str, Lexicon], top_n: int = 2000,
                       profile_size: int = 400, max_deletes: int = DEFAULT_MAX_DELETES) -> list[dict]:
    """How far each candidate source language is from the target, closest first.

    Per source: ``levenshtein`` = mean normalised Levenshtein distance of its ``top_n``
    most frequent words to their nearest target word, weighted by the source counts (so
    it estimates the distance of a running source token); ``ngram_cosine`` and
    ``ngram_out_of_place`` compare the n-gram profile of those words with the target's.
    Sources are normalised like the target lexicon.
    """
    index = target.index(max_deletes=max_deletes)
    reference = target.profile(profile_size)
    rows = []
    for lang, source in sources.items():
        top = source.normalized(target.lowercase, target.fold_diacritics).top(top_n)
        if not len(top):
            rows.append({"lang": lang, "words": 0, "levenshtein": float("nan"), "ngram_cosine": float("nan"),
                         "ngram_out_of_place": float("nan")})
            continue
        dist = index.nearest_distance(top.words).astype(np.float64)
        weights = top.counts.astype(np.float64)
        lev = float((dist * weights).sum() / weights.sum()) if weights.sum() > 0 else float(dist.mean())
        profile = top.profile(profile_size)
        rows.append({"lang": lang, "words": len(top), "levenshtein": lev,
                     "ngram_cosine": profile.cosine_distance(reference),
                     "ngram_out_of_place": profile.out_of_place(reference)})
    return sorted(rows, key=lambda r: (math.isnan(r["levenshtein"]), r["levenshtein"], r["lang"]))


def format_distance_report(rows: Sequence[Mapping]) -> str:
    """A plain-text table of ``language_distances`` rows."""
    header = ("rank", "lang", "levenshtein", "ngram_cosine", "ngram_out_of_place", "words")
    body = [(str(i), str(r["lang"]), f"{r['levenshtein']:.4f}", f"{r['ngram_cosine']:.4f}",
             f"{r['ngram_out_of_place']:.4f}", str(r["words"])) for i, r in enumerate(rows, 1)]
    widths = [max(len(h), *(len(b[c]) for b in body)) if body else len(h) for c, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) if c < 2 else h.rjust(w) for c, (h, w) in enumerate(zip(header, widths)))]
    lines += ["  ".join(v.ljust(w) if c < 2 else v.rjust(w) for c, (v, w) in enumerate(zip(b, widths)))
              for b in body]
    return "\n".join(lines)
