"""LLM-assisted annotation: entities, open-IE triples, labels or free-form answers from
an OpenAI-compatible server or an in-process CTranslate2 decoder; validated, cached,
fault-tolerant.

Per row and per sample (``n_samples`` > 1 is self-consistency): extract -> validate
-> (repair up to ``max_repairs`` times) -> verify -> validate -> (repair); the
samples' valid answers are put to a vote (``vote``). Tasks are templates (``tasks``),
answers are checked by ``validate``.

Rows leave through one door each: kept (with the ``annotate`` columns), rejected
(``invalid_answer`` with every error and raw answer, ``empty_text``,
``low_confidence``) or dead-letter (the server kept failing after the retry budget:
``llm_unavailable``; it refused the request: ``llm_request_rejected``). A server
fault never fails the run.

``Annotator`` (one per DoFn: backend, cache, event loop), ``annotate_batch`` and
``Annotate``, the stage (run in a pipeline by ``xlcorpus.transforms.core.beam``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from xlcorpus.schemas import ANNOTATE_FIELDS, SPAN
from xlcorpus.transforms.backends.llm_cache import AnswerCache, cache_key
from xlcorpus.transforms.backends.llm_client import (
    HTTPSettings,
    LLMError,
    LLMRequestRejected,
    LLMUnavailable,
    OpenAIChatBackend,
)
from xlcorpus.transforms.backends.llm_ct2 import CT2Settings, CTranslate2Backend
from xlcorpus.transforms.core.accounting import append_columns, dead_letter_rows, rejected_rows
from xlcorpus.transforms.core.models import shared_model
from xlcorpus.transforms.core.stage import Stage, StageResult
from xlcorpus.transforms.stages.annotate.options import AnnotateConfigError, AnnotateOptions
from xlcorpus.transforms.stages.annotate.tasks import load_task
from xlcorpus.transforms.stages.annotate.validate import parse_json, validate_answer
from xlcorpus.transforms.stages.annotate.vote import Answer, RowResult, Sample, settle

log = logging.getLogger(__name__)
STAGE = "annotate"
METRICS = ("requests", "retries", "prompt_tokens", "completion_tokens", "cache_hits", "cache_misses")


# --- the worker-side annotator ------------------------------------------------------------
def make_backend(opts: AnnotateOptions, generator=None):
    if opts.backend == "ctranslate2":
        return CTranslate2Backend(CT2Settings(model=opts.model, tokenizer=opts.tokenizer, device=opts.device,
                                              compute_type=opts.compute_type, model_id=opts.model_id),
                                  generator=generator)
    return OpenAIChatBackend(HTTPSettings(
        base_url=opts.base_url, model=opts.model, api_key_env=opts.api_key_env, concurrency=opts.concurrency,
        requests_per_s=opts.requests_per_s, tokens_per_min=opts.tokens_per_min, timeout_s=opts.timeout_s,
        max_retries=opts.max_retries, backoff_base_s=opts.backoff_base_s, backoff_max_s=opts.backoff_max_s))


class Annotator:
    """Everything one worker needs: the task, the backend, the cache and an event loop
    (one per DoFn instance: a batch's rows are gathered on it concurrently)."""

    def __init__(self, opts: AnnotateOptions, backend=None, cache: AnswerCache | None = None):
        opts.require_usable()
        self.opts = opts
        self.task = load_task(opts.task).with_labels(opts.labels)
        self.backend = backend if backend is not None else make_backend(opts)
        self.cache = cache if cache is not None else (AnswerCache(opts.cache_dir) if opts.cache_dir else None)
        self.model_id = opts.model_id or self.backend.model_id
        self._loop: asyncio.AbstractEventLoop | None = None

    def stats(self) -> dict[str, int]:
        s = self.backend.stats.snapshot()
        s["cache_hits"] = self.cache.hits if self.cache is not None else 0
        s["cache_misses"] = self.cache.misses if self.cache is not None else 0
        return s

    def annotate_texts(self, texts: Sequence[str | None]) -> list[RowResult]:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._all(texts))

    async def _all(self, texts):
        return await asyncio.gather(*(self.annotate_text(t) for t in texts))

    async def annotate_text(self, text: str | None) -> RowResult:
        if text is None or not text.strip():
            return RowResult("rejected", reason="empty_text", detail={"column": self.opts.text_column})
        n = self.opts.n_samples
        if n == 1:  # the common case: no extra task per row
            try:
                outcomes = [await self._sample(text, 0)]
            except LLMError as e:
                outcomes = [e]
        else:
            outcomes = await asyncio.gather(*(self._sample(text, i) for i in range(n)), return_exceptions=True)
        exchanges = [e for o in outcomes if not isinstance(o, BaseException) for e in o[2]]
        for o in outcomes:
            if isinstance(o, BaseException):
                if isinstance(o, LLMError):
                    return RowResult("dead_letter", exchanges=exchanges, error=o)
                raise o
        return settle(outcomes, exchanges, self.opts.min_confidence)

    async def _sample(self, text: str, sample: int) -> Sample:
        exchanges: list[dict] = []
        answer, errors = await self._ask_valid(self.task.messages("extract", text=text), text, sample, "extract",
                                               exchanges)
        if answer is None or not self.opts.two_stage:
            return answer, errors, exchanges, "extract"
        candidates = json.dumps(answer.value, ensure_ascii=False)
        answer, errors = await self._ask_valid(self.task.messages("verify", text=text, candidates=candidates),
                                               text, sample, "verify", exchanges)
        return answer, errors, exchanges, "verify"

    async def _ask_valid(self, messages: list[dict], text: str, sample: int, stage: str, exchanges: list[dict]
                         ) -> tuple[Answer | None, list[str]]:
        """Ask; while the answer is invalid and repairs are left, show the model its
        answer and the errors and ask again."""
        errors: list[str] = []
        for repair in range(self.opts.max_repairs + 1):
            content, cached = await self._ask(messages, sample)
            value, parse_error = parse_json(content)
            answer, errors = (None, [parse_error]) if parse_error else validate_answer(self.task, text, value)
            exchanges.append({"sample": sample, "stage": stage, "repair": repair, "cached": cached,
                              "content": content, "errors": errors})
            if answer is not None:
                return answer, []
            messages = messages + [
                {"role": "assistant", "content": content},
                {"role": "user", "content": self.task.render("repair", errors="; ".join(errors), text=text)}]
        return None, errors

    async def _ask(self, messages: list[dict], sample: int) -> tuple[str, bool]:
        """One answer: from the cache, else from the backend (then cached at once)."""
        o = self.opts
        seed = o.seed + sample if o.seed is not None else None
        schema = self.task.response_schema if o.use_json_schema else None
        key = None
        if self.cache is not None:
            params = {"temperature": o.temperature, "max_tokens": o.max_tokens, "seed": seed, "json_schema": schema}
            key = cache_key(self.model_id, self.task.hash, messages, params, sample)
            hit = self.cache.get(key)
            if hit is not None:
                return hit.content, True
        done = await self.backend.complete(
            messages, temperature=o.temperature, max_tokens=o.max_tokens, seed=seed,
            json_schema=schema if self.backend.supports_json_schema else None, schema_name=self.task.name)
        if key is not None:
            self.cache.put(key, self.model_id, done.content, done.raw, done.prompt_tokens, done.completion_tokens)
        return done.content, False

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.run_until_complete(self.backend.aclose())
            self._loop.close()
        else:
            asyncio.run(self.backend.aclose())
        if self.cache is not None:
            self.cache.close()


# --- Arrow -----------------------------------------------------------------------------------
def _dead_reason(error: Exception) -> str:
    if isinstance(error, LLMUnavailable):
        return "llm_unavailable"
    if isinstance(error, LLMRequestRejected):
        return "llm_request_rejected"
    return "llm_error"


def annotate_batch(batch: pa.RecordBatch, annotator: Annotator
                   ) -> tuple[pa.RecordBatch, pa.RecordBatch | None, pa.RecordBatch | None]:
    """(kept rows with the annotate columns, rejected rows or None, dead letters or None)."""
    column = annotator.opts.text_column
    if column not in batch.schema.names:
        raise AnnotateConfigError(f"annotate.text_column: no column {column!r}; columns: {batch.schema.names}")
    results = annotator.annotate_texts(batch.column(column).to_pylist())
    keep = np.array([r.status == "kept" for r in results], bool)
    kept_results = [r for r in results if r.status == "kept"]
    columns = {
        "annotation": pa.array([json.dumps(r.answer.annotation, ensure_ascii=False) for r in kept_results],
                               pa.string()),
        "annotation_spans": pa.array([r.answer.spans for r in kept_results], pa.list_(SPAN)),
        "annotation_label": pa.array([r.answer.label for r in kept_results], pa.string()),
        "annotation_confidence": pa.array([r.confidence for r in kept_results], pa.float32()),
        "annotation_model": pa.array([annotator.model_id] * len(kept_results), pa.string()),
        "annotation_task": pa.array([annotator.task.name] * len(kept_results), pa.string()),
        "annotation_raw": pa.array([json.dumps(r.exchanges, ensure_ascii=False) for r in kept_results],
                                   pa.string()),
    }
    kept = append_columns(batch.filter(pa.array(keep)), ANNOTATE_FIELDS, columns)
    rej = [i for i, r in enumerate(results) if r.status == "rejected"]
    rejected = rejected_rows(batch, rej, [results[i].reason for i in rej], [results[i].detail for i in rej],
                             STAGE) if rej else None
    dead_idx = [i for i, r in enumerate(results) if r.status == "dead_letter"]
    dead = pa.concat_batches([dead_letter_rows(batch.slice(i, 1), results[i].error, STAGE,
                                               _dead_reason(results[i].error), field=column)
                              for i in dead_idx]) if dead_idx else None
    return kept, rejected, dead


# --- the stage ---------------------------------------------------------------------------------
def _load_generator(opts: AnnotateOptions):
    import ctranslate2

    return ctranslate2.Generator(opts.model, device=opts.device, compute_type=opts.compute_type)


class Annotate(Stage[AnnotateOptions]):
    """LLM annotation: adds ANNOTATE_FIELDS. A batch that raises (a bug, not a server
    fault: those are per-row dead letters already) goes to dead letter as a whole;
    a configuration mistake fails the run. The counters of requests, retries, tokens
    and cache use go to the Beam metrics ``xlcorpus.annotate`` and the report."""

    name = STAGE
    Options = AnnotateOptions
    fields = ANNOTATE_FIELDS
    dead_reason = "annotate_error"
    fatal = (AnnotateConfigError,)
    retry_rows = False  # a raising batch is a bug, not one bad row: row by row would resend its requests
    report_counters = True

    def __init__(self, options: AnnotateOptions | None = None, **context):
        super().__init__(options, **context)
        self.annotator: Annotator | None = None
        self._reported: dict[str, int] = dict.fromkeys(METRICS, 0)

    @property
    def dead_field(self) -> str:
        """The column named in the dead-letter message of a batch that raised."""
        return self.options.text_column

    def check(self) -> None:
        self.options.require_usable()
        load_task(self.options.task)  # fail on the driver, not on the workers

    def setup(self) -> None:
        o = self.options
        generator = None
        if o.backend == "ctranslate2":  # one model per worker process, shared by its DoFn instances
            generator = shared_model(f"ctranslate2:{o.model}|{o.device}", lambda: _load_generator(o))
        self.annotator = Annotator(o, backend=make_backend(o, generator))
        self._reported = dict.fromkeys(METRICS, 0)

    def process(self, batch: pa.RecordBatch) -> StageResult:
        kept, rejected, dead = annotate_batch(batch, self.annotator)
        return StageResult(kept, rejected, dead, self._new_stats())

    def _new_stats(self) -> dict[str, int]:
        """The counters' increments since the last batch."""
        now = self.annotator.stats()
        delta = {name: max(now[name] - self._reported[name], 0) for name in METRICS}
        self._reported = {name: now[name] for name in METRICS}
        return delta

    def teardown(self) -> None:
        if self.annotator is not None:
            self.annotator.close()
            self.annotator = None

    def report(self) -> dict:
        o = self.options  # never the key, only the name of its variable
        return {"backend": o.backend, "model": o.model, "task": o.task, "base_url": o.base_url}
