"""``LexicalFilter``, the lexical-distance filter stage: keep the rows lexically closest
to a target language.

Use case: a tiny target language (e.g. Comorian) borrows data from a related
high-resource one (e.g. Swahili); only the source sentences whose words look most
like target words are kept. Distance is word-level normalised Levenshtein (edit
distance / length of the longer word) to the nearest word of a target lexicon,
averaged over the sentence; character n-gram profile distances are the alternative
metrics (see ``score.SentenceScorer``).

No Beam here: with ``threshold`` the generic adapter runs ``process``; with
``keep_fraction`` ``transform()`` builds the two passes of ``passes.py``. The lexicon
is loaded once per worker process through ``shared_model`` (only its path travels
with the pipeline).
"""

from __future__ import annotations

import logging
import os

import orjson
import pyarrow as pa

from xlcorpus.schemas import LEXFILTER_FIELDS
from xlcorpus.transforms.backends.model_cache import local_copy, model_identity
from xlcorpus.transforms.core.models import shared_model
from xlcorpus.transforms.core.stage import Stage, StageResult
from xlcorpus.transforms.text.languages import normalize_lang_code
from xlcorpus.transforms.stages.lexfilter.lexicon import read_lexicon
from xlcorpus.transforms.stages.lexfilter.options import LexFilterOptions
from xlcorpus.transforms.stages.lexfilter.score import (
    STAGE, LexFilterConfigError, SentenceScorer, filter_batch, language_distances, score_and_annotate, select,
)

log = logging.getLogger(__name__)


def load_scorer(opts: LexFilterOptions) -> SentenceScorer:
    """The scorer for ``opts``' lexicon, normalised as the options ask."""
    lexicon = read_lexicon(local_copy(opts.lexicon)).normalized(opts.lowercase, opts.fold_diacritics)
    log.info("lexfilter: loaded %d words from %s", len(lexicon), opts.lexicon)
    return SentenceScorer(lexicon, opts.metric, opts.weighting, opts.profile_size, opts.max_deletes,
                          opts.word_cache_size, opts.max_word_distance, opts.max_word_edits)


class LexicalFilter(Stage[LexFilterOptions]):
    """Kept rows gain ``lex_distance`` and ``lex_metric``; texts without a word are
    rejected as ``no_words``, rows farther than the cut as ``lexically_distant``. Rows
    the filter does not apply to (``langs``) pass with null ``lex_distance``.

    With ``threshold`` one pass keeps rows scoring <= threshold. With ``keep_fraction``
    pass 1 (``score``) scores every batch, Beam's ``ApproximateQuantiles`` turns the
    scores into the cut score (a side input) and pass 2 (``select``) rejects rows above
    it; ties at the cut are all kept and ``no_words`` rows do not count towards the
    fraction. The quantile's rank error is at most about N / num_quantiles and may
    depend on how the runner bundles the scores, so byte-identical output across
    runners is guaranteed with ``threshold`` only.
    """

    name = STAGE
    Options = LexFilterOptions
    fields = LEXFILTER_FIELDS
    dead_reason = "lexfilter_error"
    fatal = (LexFilterConfigError,)

    def __init__(self, options: LexFilterOptions | None = None, **context):
        super().__init__(options, **context)
        # Rows carry ISO 639-3 codes (langid); the config may say 639-1.
        self.langs = tuple(normalize_lang_code(str(c)) for c in self.options.langs)
        self.scorer: SentenceScorer | None = None

    def __getstate__(self):
        return {**self.__dict__, "scorer": None}  # the scorer is loaded per worker, never pickled

    def check(self) -> None:
        o = self.options
        LexFilterOptions.model_validate({**dict(o), "enabled": True})  # lexicon + exactly one selection
        if "://" not in o.lexicon and not os.path.exists(o.lexicon):
            raise FileNotFoundError(f"lexfilter.lexicon: {o.lexicon} does not exist")

    def setup(self) -> None:
        o = self.options
        key = orjson.dumps([o.lexicon, o.metric, o.weighting, o.lowercase, o.fold_diacritics, o.profile_size,
                            o.max_deletes, o.word_cache_size, o.max_word_distance, o.max_word_edits]).decode()
        self.scorer = shared_model(f"lexfilter:{key}", lambda: load_scorer(o))

    def process(self, batch: pa.RecordBatch) -> StageResult:
        """The threshold pass: score and keep rows <= threshold."""
        o = self.options
        return StageResult(*filter_batch(batch, self.scorer, o.threshold, o.metric, self.langs))

    def score(self, batch: pa.RecordBatch) -> StageResult:
        """Pass 1 of keep_fraction: annotate scores, reject texts without words."""
        return StageResult(*score_and_annotate(batch, self.scorer, self.options.metric, self.langs))

    def select(self, batch: pa.RecordBatch, cut: float | None) -> StageResult:
        """Pass 2 of keep_fraction: reject annotated rows above the cut score; needs no lexicon."""
        o = self.options
        return StageResult(*select(batch, cut, o.metric, o.keep_fraction))

    def transform(self):
        if self.options.threshold is not None:
            from xlcorpus.transforms.core.beam import StageTransform

            return StageTransform(self, label="LexFilter")
        from xlcorpus.transforms.stages.lexfilter.passes import KeepFraction

        return KeepFraction(self)

    def report(self) -> dict:
        return model_identity(self.options.lexicon)

    def report_sections(self) -> dict:
        """``language_distances``: each ``compare`` language's distance to the target
        lexicon, closest first, so a user can choose the source language to mix in."""
        o = self.options
        if not (o.lexicon and o.compare):
            return {"language_distances": []}
        target = read_lexicon(local_copy(o.lexicon))
        sources = {lang: read_lexicon(local_copy(path)) for lang, path in o.compare.items()}
        return {"language_distances": language_distances(target, sources)}

