"""Lexical-distance filter: keep rows lexically close to the target language.

Modules: ``tokens`` (normalisation, word tokens), ``lexicon`` (the target lexicon),
``index`` (exact nearest-word search), ``profile`` (character n-gram profiles),
``score`` (sentence scores, decisions, language-distance report), ``options``,
``stage`` (``LexicalFilter``) and ``passes`` (the Beam keep_fraction passes, the only
module that imports Beam; not imported here).
"""

from xlcorpus.transforms.stages.lexfilter.index import NearestWordIndex, brute_force_nearest
from xlcorpus.transforms.stages.lexfilter.lexicon import (
    LEXICON_SCHEMA, Lexicon, LexiconOptions, build_lexicon, read_lexicon, write_lexicon,
)
from xlcorpus.transforms.stages.lexfilter.options import LexFilterOptions
from xlcorpus.transforms.stages.lexfilter.profile import NgramProfile, word_ngrams
from xlcorpus.transforms.stages.lexfilter.score import (
    STAGE, LexFilterConfigError, SentenceScorer, filter_batch, format_distance_report, language_distances,
    score_batch,
)
from xlcorpus.transforms.stages.lexfilter.stage import LexicalFilter, load_scorer
from xlcorpus.transforms.stages.lexfilter.tokens import normalize_text, token_rows, tokenize, tokenize_batch

__all__ = [
    "LEXICON_SCHEMA", "STAGE", "LexFilterConfigError", "LexFilterOptions", "LexicalFilter", "Lexicon",
    "LexiconOptions", "NearestWordIndex", "NgramProfile", "SentenceScorer", "brute_force_nearest", "build_lexicon",
    "filter_batch", "format_distance_report", "language_distances", "load_scorer", "normalize_text",
    "read_lexicon", "score_batch", "token_rows", "tokenize", "tokenize_batch", "word_ngrams", "write_lexicon",
]
