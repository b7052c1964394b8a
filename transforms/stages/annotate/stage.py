"""LLM-assisted annotation: entities, open-IE triples, labels or free-form answers from
an OpenAI-compatible server or an in-process CTranslate2 decoder; validated, cached,
fault-tolerant.

A *task* is a template file (shipped: ``ner``, ``openie``, ``classify``,
``freeform``; or a path): a system prompt, a stage-1 ``extract`` prompt, a stage-2
``verify`` prompt that sees stage 1's answer and corrects it, a ``repair`` prompt,
the answer's JSON schema and which answer fields are spans or labels.

Per row and per sample (``n_samples`` > 1 is self-consistency): extract -> validate
-> (repair up to ``max_repairs`` times) -> verify -> validate -> (repair). Validation:
the JSON parses (code fences and chatter around it are tolerated), matches the
schema, labels are in the allowed set, and every span field occurs in the text
after whitespace normalisation (the stage finds the offsets; models are bad at
counting characters). The samples' valid answers are put to a plurality vote; the
confidence is the winning share of all samples.

Rows leave through one door each: kept (with the ``annotate`` columns), rejected
(``invalid_answer`` with every error and raw answer, ``empty_text``,
``low_confidence``) or dead-letter (the server kept failing after the retry budget:
``llm_unavailable``; it refused the request: ``llm_request_rejected``). A server
fault never fails the run.

Core: ``Task``/``load_task``, ``parse_json``, ``schema_errors``, ``find_span``,
``validate_answer``, ``vote``, ``Annotator`` (one per DoFn: backend, cache, event
loop) and ``annotate_batch``. ``Annotate`` is the thin Beam transform.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import yaml
from apache_beam.metrics import Metrics
from apache_beam.utils import shared
from xlcorpus.schemas import ANNOTATE_FIELDS, SPAN
from xlcorpus.transforms.core.batch_fn import (
    DEAD_LETTER,
    KEPT,
    REJECTED,
    BatchStageFn,
    dead_letter_rows,
    rejected_rows,
)
from xlcorpus.transforms.backends.llm_cache import AnswerCache, cache_key
from xlcorpus.transforms.backends.llm_client import (
    CT2Settings,
    CTranslate2Backend,
    HTTPSettings,
    LLMError,
    LLMRequestRejected,
    LLMUnavailable,
    OpenAIChatBackend,
)
from xlcorpus.transforms.core.resources import shipped_names, shipped_or_path

log = logging.getLogger(__name__)
STAGE = "annotate"
BACKENDS = ("openai", "ctranslate2")
METRICS = ("requests", "retries", "prompt_tokens", "completion_tokens", "cache_hits", "cache_misses")


class AnnotateConfigError(ValueError):
    """A configuration mistake: fails the run instead of dead-lettering every row."""


# --- options -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnnotateOptions:
    task: str = "ner"  # shipped task name or a template file path
    labels: tuple[str, ...] = ()  # the allowed labels; empty: the template's own
    backend: str = "openai"  # openai | ctranslate2
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = ""  # the server's model name, or the CTranslate2 model directory
    api_key_env: str | None = None  # NAME of the environment variable holding the API key
    model_id: str | None = None  # cache identity of the model; default: backend + model
    # HTTP client (per worker process)
    concurrency: int = 8
    requests_per_s: float | None = None
    tokens_per_min: float | None = None
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    # in-process CTranslate2
    tokenizer: str | None = None  # SentencePiece .model; None: whitespace tokens
    device: str = "cpu"
    compute_type: str = "default"
    # prompting
    two_stage: bool = True  # extract, then verify/correct
    n_samples: int = 1  # > 1: self-consistency vote (needs temperature > 0)
    temperature: float = 0.0
    seed: int | None = None  # sent as seed + sample index
    max_tokens: int = 512
    max_repairs: int = 2
    min_confidence: float = 0.0  # reject below this share of agreeing samples
    use_json_schema: bool = True  # send response_format when the server takes it
    cache_dir: str | None = None  # None: no cache
    text_column: str = "text"

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise AnnotateConfigError(f"annotate.backend: expected one of {BACKENDS}, got {self.backend!r}")
        if not self.model:
            raise AnnotateConfigError("annotate.model is required (a model name, or a CTranslate2 model directory)")
        if self.n_samples < 1 or self.max_repairs < 0:
            raise AnnotateConfigError(f"annotate: n_samples >= 1 and max_repairs >= 0 needed, got "
                                      f"{self.n_samples}, {self.max_repairs}")
        if self.n_samples > 1 and self.temperature <= 0:
            raise AnnotateConfigError("annotate.n_samples > 1 needs temperature > 0: greedy samples all agree")
        if self.concurrency < 1 or self.timeout_s <= 0 or self.max_retries < 0 or self.max_tokens < 1:
            raise AnnotateConfigError(f"annotate: concurrency >= 1, timeout_s > 0, max_retries >= 0 and "
                                      f"max_tokens >= 1 needed, got {self.concurrency}, {self.timeout_s}, "
                                      f"{self.max_retries}, {self.max_tokens}")
        object.__setattr__(self, "labels", tuple(self.labels))  # a list from a config stays hashable


# --- tasks ---------------------------------------------------------------------------------
PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
PLACEHOLDERS = {"text", "labels", "schema", "candidates", "errors"}
LABELS_MARK = "$labels"


def render(template: str, **values: str) -> str:
    """``{{ name }}`` placeholders (braces of JSON examples in a prompt stay as they are)."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class Task:
    name: str
    system: str
    extract: str
    verify: str
    repair: str
    schema: dict
    labels: tuple[str, ...] = ()
    items: str | None = None  # key of the answer's list of items; None: the answer is one item
    span_fields: tuple[str, ...] = ()
    label_field: str | None = None
    all_occurrences: bool = False
    source_hash: str = ""

    @property
    def hash(self) -> str:
        """What the answer cache keys on: the template file plus the allowed labels."""
        return hashlib.sha256((self.source_hash + "\0" + "\0".join(self.labels)).encode()).hexdigest()

    @functools.cached_property  # per request otherwise: worth caching at hundreds of requests/s
    def response_schema(self) -> dict:
        """The schema with ``$labels`` replaced by the allowed labels (dropped when there are none)."""
        def sub(node):
            if isinstance(node, dict):
                return {k: sub(v) for k, v in node.items() if not (k == "enum" and v == LABELS_MARK and
                                                                    not self.labels)}
            if isinstance(node, list):
                return [sub(v) for v in node]
            return list(self.labels) if node == LABELS_MARK else node
        return sub(self.schema)

    @functools.cached_property
    def schema_json(self) -> str:
        return json.dumps(self.response_schema, ensure_ascii=False, separators=(",", ":"))

    def with_labels(self, labels: Sequence[str]) -> Task:
        return replace(self, labels=tuple(labels)) if labels else self

    def render(self, prompt: str, **values: str) -> str:
        values = {"labels": ", ".join(self.labels) or "(any)", "schema": self.schema_json, "candidates": "",
                  "errors": "", "text": "", **values}
        return render(getattr(self, prompt), **values).strip()

    def messages(self, prompt: str, **values: str) -> list[dict]:
        return [{"role": "system", "content": self.system.strip()},
                {"role": "user", "content": self.render(prompt, **values)}]


def shipped_tasks() -> list[str]:
    return shipped_names("tasks")


def load_task(name_or_path: str) -> Task:
    """A shipped task by name or a YAML template path; errors name the file and key."""
    try:
        path = shipped_or_path("tasks", name_or_path)
    except FileNotFoundError as e:
        raise AnnotateConfigError(f"annotate.task: {e}") from None
    try:
        source = path.read_bytes()
        data = yaml.safe_load(source) or {}
    except (OSError, yaml.YAMLError) as e:
        raise AnnotateConfigError(f"annotate.task: cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise AnnotateConfigError(f"annotate.task: {path}: expected a mapping")
    missing = [k for k in ("system", "extract", "verify", "repair", "schema") if not data.get(k)]
    if missing:
        raise AnnotateConfigError(f"annotate.task: {path}: missing {', '.join(missing)}")
    for key in ("system", "extract", "verify", "repair"):
        unknown = set(PLACEHOLDER.findall(data[key])) - PLACEHOLDERS
        if unknown:
            raise AnnotateConfigError(f"annotate.task: {path}: {key}: unknown placeholder(s) {sorted(unknown)}; "
                                      f"known: {sorted(PLACEHOLDERS)}")
    answer = data.get("answer") or {}
    return Task(name=data.get("name", path.stem), system=data["system"], extract=data["extract"],
                verify=data["verify"], repair=data["repair"], schema=data["schema"],
                labels=tuple(data.get("labels") or ()), items=answer.get("items"),
                span_fields=tuple(answer.get("span_fields") or ()), label_field=answer.get("label_field"),
                all_occurrences=bool(answer.get("all_occurrences")),
                source_hash=hashlib.sha256(source).hexdigest())


# --- parsing and validation -------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


def parse_json(content: str) -> tuple[Any, str | None]:
    """(value, None) or (None, error). Tolerates code fences and prose around the JSON:
    the first object or array that decodes wins."""
    s = (content or "").strip()
    if not s:
        return None, "the answer is empty"
    try:
        return json.loads(s), None
    except ValueError:
        pass
    fenced = _FENCE.search(s)
    if fenced:
        try:
            return json.loads(fenced.group(1)), None
        except ValueError:
            pass
    for i, ch in enumerate(s):
        if ch in "{[":
            try:
                return _DECODER.raw_decode(s, i)[0], None
            except ValueError:
                continue
    return None, f"the answer is not JSON: {s[:80]!r}"


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, name: str) -> bool:
    if name in ("number", "integer"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok and (name == "number" or float(value).is_integer())
    return isinstance(value, _TYPES[name])


def schema_errors(value, schema: dict, path: str = "$") -> list[str]:
    """Errors of ``value`` against a JSON-schema subset: type, properties, required,
    additionalProperties (bool), items, enum, min/maxLength, min/maxItems, minimum, maximum."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} < minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} > maximum {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing required key {k!r}" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected key {k!r}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                errors += schema_errors(value[k], sub, f"{path}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


_WS = re.compile(r"\s+")


def normalize_ws(text: str) -> tuple[str, list[int]]:
    """Whitespace runs -> one space; ``index[i]`` is where normalised char i came from."""
    out, index, pos = [], [], 0
    for m in _WS.finditer(text):
        out.append(text[pos:m.start()])
        index.extend(range(pos, m.start()))
        out.append(" ")
        index.append(m.start())
        pos = m.end()
    out.append(text[pos:])
    index.extend(range(pos, len(text)))
    return "".join(out), index


def _bounded(text: str, start: int, end: int) -> bool:
    return (start == 0 or not text[start - 1].isalnum()) and (end == len(text) or not text[end].isalnum())


def find_span(text: str, needle: str, norm: tuple[str, list[int]] | None = None) -> list[tuple[int, int]]:
    """Every non-overlapping occurrence of ``needle`` in ``text`` as [start, end) offsets
    into ``text``, comparing after whitespace normalisation. Occurrences that are whole
    words come first; if there are any, part-of-word ones are dropped."""
    norm_text, index = norm or normalize_ws(text)
    target = _WS.sub(" ", needle.strip())
    if not target:
        return []
    found, i = [], norm_text.find(target)
    while i >= 0:
        found.append((index[i], index[i + len(target) - 1] + 1))
        i = norm_text.find(target, i + len(target))
    whole = [o for o in found if _bounded(text, *o)]
    return whole or found


@dataclass
class Answer:
    value: dict  # the model's answer, cleaned (items deduplicated)
    annotation: dict  # value + the offsets the stage found
    spans: list[dict] | None
    label: str | None
    key: str = ""  # identity for the vote: canonical JSON, items in any order


def _vote_key(task: Task, value: dict) -> str:
    def canon(v):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    if task.items:
        value = {**value, task.items: sorted(canon(i) for i in value[task.items])}
    return canon(value)


def _coerce(task: Task, value):
    """A bare list where the schema wants ``{items: [...]}`` is the list of items."""
    if isinstance(value, list) and task.items:
        return {task.items: value}
    return value


def validate_answer(task: Task, text: str, value) -> tuple[Answer | None, list[str]]:
    value = _coerce(task, value)
    errors = schema_errors(value, task.response_schema)
    if errors:
        return None, errors
    if task.items:
        items = []
        for item in value.get(task.items) or []:
            if item not in items:
                items.append(item)
        where = [f"{task.items}[{i}]" for i in range(len(items))]
    else:
        items, where = [value], ["answer"]
    norm = normalize_ws(text) if task.span_fields else None
    annotated, spans = [], []
    for item, at in zip(items, where):
        label = item.get(task.label_field) if task.label_field else None
        if task.label_field and task.labels and label not in task.labels:
            errors.append(f"{at}.{task.label_field}: {label!r} is not one of the allowed labels {list(task.labels)}")
        offsets = {}
        for f in task.span_fields:
            occurrences = find_span(text, str(item.get(f, "")), norm)
            if not occurrences:
                errors.append(f"{at}.{f}: {item.get(f)!r} does not occur in the text")
                continue
            offsets[f] = list(occurrences[0])
            if len(task.span_fields) == 1 and task.label_field:
                for start, end in occurrences if task.all_occurrences else occurrences[:1]:
                    spans.append({"start": start, "end": end, "label": label})
        annotated.append({**item, "offsets": offsets} if task.span_fields else item)
    if errors:
        return None, errors
    if task.items:
        clean = {**value, task.items: items}
        annotation = {**value, task.items: annotated}
    else:
        clean, annotation = value, annotated[0]
    has_spans = len(task.span_fields) == 1 and task.label_field is not None
    return Answer(clean, annotation, _non_overlapping(spans) if has_spans else None,
                  value.get(task.label_field) if task.label_field and not task.items else None,
                  _vote_key(task, clean)), []


def _non_overlapping(spans: list[dict]) -> list[dict]:
    """Longest first, then leftmost; a span overlapping an accepted one is dropped."""
    taken: list[dict] = []
    for s in sorted(spans, key=lambda s: (s["start"] - s["end"], s["start"], s["label"] or "")):
        if all(s["end"] <= t["start"] or s["start"] >= t["end"] for t in taken):
            taken.append(s)
    return sorted(taken, key=lambda s: (s["start"], s["end"]))


def vote(answers: Sequence[Answer | None], n: int) -> tuple[Answer | None, float]:
    """Plurality over the valid answers (ties: the lowest sample wins); confidence is the
    winner's share of all ``n`` samples, invalid ones included."""
    valid = [a for a in answers if a is not None]
    if not valid:
        return None, 0.0
    counts = Counter(a.key for a in valid)
    best = max(counts.values())
    winner = next(a for a in valid if counts[a.key] == best)
    return winner, best / n


# --- the worker-side annotator ------------------------------------------------------------
@dataclass
class RowResult:
    status: str  # kept | rejected | dead_letter
    answer: Answer | None = None
    confidence: float | None = None
    exchanges: list[dict] = field(default_factory=list)
    reason: str | None = None
    detail: dict | None = None
    error: Exception | None = None


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
        winner, confidence = vote([o[0] for o in outcomes], n)
        if winner is None:
            errors = [{"sample": i, "stage": o[3], "errors": o[1]} for i, o in enumerate(outcomes)]
            return RowResult("rejected", exchanges=exchanges, reason="invalid_answer",
                             detail={"errors": errors, "raw": exchanges})
        if confidence < self.opts.min_confidence:
            return RowResult("rejected", winner, confidence, exchanges, "low_confidence",
                             {"confidence": confidence, "raw": exchanges})
        return RowResult("kept", winner, confidence, exchanges)

    async def _sample(self, text: str, sample: int) -> tuple[Answer | None, list[str], list[dict], str]:
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
    kept = batch.filter(pa.array(keep))
    for f in ANNOTATE_FIELDS:
        kept = kept.append_column(f, columns[f.name])
    rej = [i for i, r in enumerate(results) if r.status == "rejected"]
    rejected = rejected_rows(batch, rej, [results[i].reason for i in rej], [results[i].detail for i in rej],
                             STAGE) if rej else None
    dead_idx = [i for i, r in enumerate(results) if r.status == "dead_letter"]
    dead = pa.concat_batches([dead_letter_rows(batch.slice(i, 1), results[i].error, STAGE,
                                               _dead_reason(results[i].error), field=column)
                              for i in dead_idx]) if dead_idx else None
    return kept, rejected, dead


# --- Beam ----------------------------------------------------------------------------------------
_SHARED_GENERATORS = shared.Shared()


class _Holder:
    """shared.Shared needs a weak-referenceable object."""

    def __init__(self, generator):
        self.generator = generator


class _AnnotateFn(BatchStageFn):
    stage = STAGE
    dead_reason = "llm_error"

    def __init__(self, opts: AnnotateOptions):
        super().__init__()
        self.opts = opts
        self.metrics = {name: Metrics.counter(f"xlcorpus.{STAGE}", name) for name in METRICS}
        self.annotator: Annotator | None = None

    def setup(self):
        generator = None
        if self.opts.backend == "ctranslate2":
            import ctranslate2

            # one model per worker process, shared by its DoFn instances (threads)
            o = self.opts
            generator = _SHARED_GENERATORS.acquire(lambda: _Holder(ctranslate2.Generator(
                o.model, device=o.device, compute_type=o.compute_type)), tag=f"{o.model}|{o.device}").generator
        self.annotator = Annotator(self.opts, backend=make_backend(self.opts, generator))
        self._reported = dict.fromkeys(METRICS, 0)

    def _report_metrics(self):
        now = self.annotator.stats()
        for name in METRICS:
            if now[name] > self._reported[name]:
                self.metrics[name].inc(now[name] - self._reported[name])
        self._reported = {name: now[name] for name in METRICS}

    def process(self, batch: pa.RecordBatch):
        self.counters["in"].inc(batch.num_rows)
        try:
            kept, rejected, dead = annotate_batch(batch, self.annotator)
        except AnnotateConfigError:
            raise
        except Exception as e:  # a bug, not a server fault: the rows go to dead-letter, the run goes on
            log.exception("annotate failed on a batch of %d rows", batch.num_rows)
            kept, rejected, dead = None, None, dead_letter_rows(batch, e, STAGE, "annotate_error",
                                                               field=self.opts.text_column)
        self._report_metrics()
        if kept is not None and kept.num_rows:
            self.counters[KEPT].inc(kept.num_rows)
            yield kept
        if rejected is not None and rejected.num_rows:
            self.counters[REJECTED].inc(rejected.num_rows)
            yield beam.pvalue.TaggedOutput(REJECTED, rejected)
        if dead is not None and dead.num_rows:
            self.counters[DEAD_LETTER].inc(dead.num_rows)
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead)

    def teardown(self):
        if self.annotator is not None:
            self.annotator.close()


class Annotate(beam.PTransform):
    """PCollection[RecordBatch] -> outputs kept / rejected / dead_letter."""

    def __init__(self, opts: AnnotateOptions):
        super().__init__()
        load_task(opts.task)  # fail at construction, not on the workers
        self.opts = opts

    def expand(self, batches):
        return batches | "Annotate" >> beam.ParDo(_AnnotateFn(self.opts)).with_outputs(
            REJECTED, DEAD_LETTER, main=KEPT)
