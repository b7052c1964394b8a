"""Label projection: move labelled spans into the machine translation of a sentence
(translate-train) or predicted labels from a translation back onto the original
(translate-test), with one of three methods behind one interface.

- ``constrained`` (Codec-style): the unmarked source is translated once (the
  template). Per entity, the source is marked ``[ ... ]`` around it, and the answer is
  the marker placement inside the template (open and close at template word
  boundaries) whose marked template the model scores highest given the marked
  source. Every placement has the same length, so the plain sum of log-probs
  compares them. The search is best-first branch-and-bound whose every request is
  ``score_batch`` over whole marked templates, the first one the placement the
  translation's cross-attention suggests. Scoring a placement bounds all others at
  once: one that agrees with it before position k and differs at k scores at most
  the exact log-prob of that common prefix plus log(1 - p(the scored token at k))
  (later terms are log-probs <= 0). Branches that bound cannot prune get the exact
  next-token log-prob instead, from one teacher-forced pass over the shortest prefix
  that covers them (``translate_batch(return_logits_vocab=True)``). Only placements
  whose bound can still beat the best exact score are scored. ``exhaustive=True``
  scores every placement; both give the same answer (tested).
- ``marker`` (EasyProject): translate the sentence with all entities marked, parse
  the brackets, match them to the entities (exact text, then fuzzy, rapidfuzz);
  a different number of bracket pairs than entities is a rejection.
- ``alignment``: cross-attention of the translation (``return_attention``) aligns
  each target piece to a source piece; an entity's target span is the hull of the
  target words aligned into it.

Entity searches of a whole batch run as generators in lockstep, so each round of
requests of all entities of all sentences goes to the model together, grouped by
length into batches of ``batch_tokens`` padded tokens (``run_searches``).

Failures (no span, conflict, count mismatch, ...) are rejections with a reason.
Modules: ``options`` (ProjectionOptions), ``markers`` (text and marker helpers),
``constrained`` / ``marker`` / ``alignment`` (the methods), ``results`` (Projected),
``projector`` (Projector, project_batch; pure, over lists), ``stage`` (ProjectLabels,
the stage; run in a pipeline by the generic adapter). No Beam at import time.
"""
