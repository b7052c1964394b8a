"""``Projector``: one method over a batch of sentences (pure, over lists), in
translate-train or translate-test; ``project_batch``: NER_SCHEMA rows ->
PROJECTION_SCHEMA rows and rejected rows; ``load_predictor``: the translate-test tagger."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from xlcorpus.schemas import PROJECTION_SCHEMA
from xlcorpus.transforms.backends.mt import MTBackend, Translation
from xlcorpus.transforms.core.accounting import rejected_rows
from xlcorpus.transforms.stages.project.alignment import project_alignment
from xlcorpus.transforms.stages.project.constrained import project_constrained
from xlcorpus.transforms.stages.project.marker import project_marker
from xlcorpus.transforms.stages.project.markers import tokens_and_tags
from xlcorpus.transforms.stages.project.options import ProjectionOptions
from xlcorpus.transforms.stages.project.results import Projected, public

STAGE = "project"
Predictor = Callable[[list[str]], list[list[dict]]]  # texts -> spans {start, end, label} per text


class Projector:
    """Projects a batch of sentences with one method (see the package docstring).

    ``forward`` translates source-language -> target-language; translate-test also
    needs ``reverse`` (target -> source) and a ``predictor`` for the source language.
    """

    def __init__(self, opts: ProjectionOptions, forward: MTBackend, reverse: MTBackend | None = None,
                 predictor: Predictor | None = None):
        self.opts, self.fw, self.rev, self.predictor = opts, forward, reverse, predictor
        if opts.mode == "translate-test" and (reverse is None or predictor is None):
            raise ValueError("translate-test needs a reverse translation model and a predictor")
        self.opens = forward.target_pieces(opts.open_marker)
        self.closes = forward.target_pieces(opts.close_marker)

    # translate-train: labelled source sentences -> target-language sentences
    def project(self, texts: Sequence[str], spans: Sequence[Sequence[dict]]) -> list[Projected]:
        if self.opts.mode == "translate-train":
            return self.project_onto(texts, spans, None)
        return self.translate_test(texts)

    def translate_test(self, targets: Sequence[str]) -> list[Projected]:
        """Target-language texts -> labels: translate to the source language, predict
        there, project the predictions back onto the original texts."""
        sources = self.rev.translate([self.rev.source_tokens(t) for t in targets], beam_size=self.opts.beam_size)
        src_texts = [self.rev.decode(t.tokens) for t in sources]
        predicted = self.predictor(src_texts)
        results = self.project_onto(src_texts, predicted, list(targets))
        for r, src_text, spans in zip(results, src_texts, predicted):
            r.sequences += 1
            r.src_text, r.src_spans = src_text, [public(x) for x in spans]
        return results

    def project_onto(self, texts: Sequence[str], spans: Sequence[Sequence[dict]],
                     fixed: Sequence[str] | None) -> list[Projected]:
        """Project ``spans`` of ``texts`` into their translation, or onto the given
        ``fixed`` target texts (translate-test)."""
        method = self.opts.method
        if method == "marker":
            return project_marker(self, texts, spans, fixed)
        # constrained: the attention is the search's first guess (it never changes the answer)
        templates, trans_scores = self._templates(texts, fixed, attention=True)
        if method == "alignment":
            return project_alignment(self, texts, spans, templates, trans_scores, fixed)
        return project_constrained(self, texts, spans, templates, trans_scores, fixed)

    def _templates(self, texts, fixed, attention=False):
        """Target pieces (and attention) per sentence: the translation, or the fixed text."""
        fw = self.fw
        sources = [fw.source_tokens(t) for t in texts]
        if fixed is None:
            out = fw.translate(sources, attention=attention, beam_size=self.opts.beam_size)
            return out, [t.score for t in out]
        pieces = [fw.target_pieces(t) for t in fixed]
        if attention:  # forced decoding of the given target gives its attention
            out = fw.translate(sources, attention=True, prefixes=pieces, beam_size=1)
        else:
            out = [Translation(p, float("nan")) for p in pieces]
        return out, [float("nan")] * len(texts)


def project_batch(batch: pa.RecordBatch, projector: Projector, names: Sequence[str]
                  ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """NER_SCHEMA rows -> (PROJECTION_SCHEMA rows, REJECTED rows)."""
    o = projector.opts
    texts = batch.column("text").to_pylist()
    spans = batch.column("spans").to_pylist() if "spans" in batch.schema.names else [[]] * len(texts)
    spans = [s or [] for s in spans]
    known = {n[2:] for n in names if n[:2] in ("B-", "I-")}
    verdicts: list[tuple[str, dict] | None] = [None] * len(texts)
    todo = []
    for k, ents in enumerate(spans):
        unknown = sorted({s["label"] for s in ents} - known)
        if unknown and o.mode == "translate-train":
            verdicts[k] = ("unknown_label", {"labels": unknown, "names": list(names)})
        else:
            todo.append(k)
    results = projector.project([texts[k] for k in todo], [spans[k] for k in todo]) if todo else []
    rows = []
    for k, res in zip(todo, results):
        if res.reason is not None:
            verdicts[k] = (res.reason, {**(res.detail or {}), "method": o.method})
            continue
        try:
            tokens, tags = tokens_and_tags(res.text, res.spans, names)
        except KeyError as e:
            verdicts[k] = ("unknown_label", {"error": str(e)})
            continue
        src_spans = spans[k] if o.mode == "translate-train" else res.src_spans
        rows.append({
            "id": batch.column("id")[k].as_py(), "text": res.text, "source": batch.column("source")[k].as_py(),
            "line": batch.column("line")[k].as_py(), "offset": batch.column("offset")[k].as_py(),
            "tokens": tokens, "ner_tags": tags, "spans": res.spans, "method": o.method, "mode": o.mode,
            "src_text": texts[k] if o.mode == "translate-train" else res.src_text,
            "src_spans": src_spans, "span_scores": res.span_scores,
            "translation_score": None if res.translation_score is None or np.isnan(res.translation_score)
            else res.translation_score,
            "model_calls": res.sequences, "scored_candidates": res.scored})
    kept = pa.RecordBatch.from_pylist(rows, schema=PROJECTION_SCHEMA)
    bad = [k for k, v in enumerate(verdicts) if v is not None]
    rejected = rejected_rows(batch, bad, [verdicts[k][0] for k in bad], [verdicts[k][1] for k in bad], STAGE) \
        if bad else None
    return kept, rejected


def load_predictor(spec: str) -> Predictor:
    """``module:function`` -> the callable (translate-test's source-language tagger)."""
    module, sep, name = spec.partition(":")
    if not sep:
        raise ValueError(f"predictor {spec!r}: expected module:function")
    return getattr(importlib.import_module(module), name)
