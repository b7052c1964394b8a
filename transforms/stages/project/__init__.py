"""Label projection: move labelled spans into the machine translation of a sentence
(translate-train) or predicted labels from a translation back onto the original
(translate-test), with one of three methods behind one interface.

- ``constrained`` (Codec-style): the unmarked source is translated once (the
  template). Per entity, the source is marked ``[ ... ]`` around it, and the answer is
  the marker placement inside the template (open and close at template word
  boundaries) whose marked template the model scores highest given the marked
  source. Every placement has the same length, so the plain sum of log-probs
  compares them. The search is best-first branch-and-bound: one teacher-forced pass
  along the template gives, for every opening position i, the exact log-prob of the
  template before i plus log p([ | ...), an upper bound on every placement opening
  at i (all later terms are log-probs <= 0). Expanding i (one pass along the template
  with [ inserted) bounds each close position j the same way; only placements whose
  bound can still beat the best exact score are scored (``score_batch``).
  ``exhaustive=True`` scores every placement; both give the same answer (tested).
- ``marker`` (EasyProject): translate the sentence with all entities marked, parse
  the brackets, match them to the entities (exact text, then fuzzy, rapidfuzz);
  a different number of bracket pairs than entities is a rejection.
- ``alignment``: cross-attention of the translation (``return_attention``) aligns
  each target piece to a source piece; an entity's target span is the hull of the
  target words aligned into it.

Entity searches of a whole batch run as generators in lockstep, so each round of
requests is one batched model call (``run_searches``).

Failures (no span, conflict, count mismatch, ...) are rejections with a reason.
Modules: ``options`` (ProjectionOptions), ``markers`` (text and marker helpers),
``constrained`` / ``marker`` / ``alignment`` (the methods), ``results`` (Projected),
``projector`` (Projector, project_batch; pure, over lists), ``stage`` (ProjectLabels,
the stage; run in a pipeline by the generic adapter). No Beam at import time.
"""
