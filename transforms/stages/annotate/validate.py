"""Checking a model's answer: the JSON parses (code fences and chatter around it are
tolerated), matches the task's JSON schema (``jsonschema``; errors name the JSON path
and what was wrong, so the repair prompt can show them to the model), labels are in
the allowed set, and every span field occurs in the text after whitespace
normalisation (the stage finds the offsets; models are bad at counting characters)."""

from __future__ import annotations

import functools
import json
import re
from typing import TYPE_CHECKING, Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.validators import validator_for

from xlcorpus.transforms.stages.annotate.vote import Answer, vote_key

if TYPE_CHECKING:
    from xlcorpus.transforms.stages.annotate.tasks import Task

# --- parsing --------------------------------------------------------------------------------
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


# --- the JSON schema ------------------------------------------------------------------------------
def schema_problem(schema) -> str | None:
    """Why ``schema`` is not a usable JSON schema (None: it is)."""
    if not isinstance(schema, dict):
        return f"expected a mapping, got {type(schema).__name__}"
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as e:
        return f"{e.json_path}: {e.message}"
    return None


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str):
    schema = json.loads(schema_json)
    return validator_for(schema, default=Draft202012Validator)(schema)


# A node's own errors come in this order, before its children's (one line each, short
# enough for a repair prompt); other keywords keep jsonschema's message.
_RANK = {k: i for i, k in enumerate(("type", "enum", "minLength", "maxLength", "minimum", "maximum", "required",
                                     "additionalProperties", "minItems", "maxItems"))}


def _messages(error: ValidationError) -> list[str]:
    path, kind, value, arg = error.json_path, error.validator, error.instance, error.validator_value
    if kind == "type":
        return [f"{path}: expected {' or '.join([arg] if isinstance(arg, str) else arg)}, "
                f"got {type(value).__name__}"]
    if kind == "enum":
        return [f"{path}: {value!r} is not one of {arg}"]
    if kind in ("minLength", "maxLength"):
        return [f"{path}: {'shorter' if kind == 'minLength' else 'longer'} than {arg} characters"]
    if kind in ("minimum", "maximum"):
        return [f"{path}: {value} {'<' if kind == 'minimum' else '>'} {kind} {arg}"]
    if kind in ("minItems", "maxItems"):
        return [f"{path}: {'fewer' if kind == 'minItems' else 'more'} than {arg} items"]
    if kind == "required":  # one error per missing key; the first names them all
        return [f"{path}: missing required key {k!r}" for k in arg if k not in value]
    if kind == "additionalProperties" and arg is False:
        props, patterns = error.schema.get("properties", {}), error.schema.get("patternProperties", {})
        return [f"{path}: unexpected key {k!r}" for k in value
                if k not in props and not any(re.search(p, k) for p in patterns)]
    return [f"{path}: {error.message}"]


def _errors(value, validator) -> list[str]:
    """Pre-order over the answer: a node's own errors, then its children's in the order
    the validator reached them (the schema's property order, list order). A value of the
    wrong type reports only that."""
    own: dict[tuple, list[ValidationError]] = {}
    children: dict[tuple, list[tuple]] = {}
    for e in validator.iter_errors(value):
        path = tuple(e.absolute_path)
        own.setdefault(path, []).append(e)
        for i in range(len(path)):
            kids = children.setdefault(path[:i], [])
            if path[: i + 1] not in kids:
                kids.append(path[: i + 1])
    out: list[str] = []

    def visit(path: tuple):
        errors = sorted(own.get(path, ()), key=lambda e: _RANK.get(e.validator, len(_RANK)))
        if errors and errors[0].validator == "type":
            out.extend(_messages(errors[0]))
            return
        done = set()
        for e in errors:
            if e.validator == "required":
                if "required" in done:
                    continue
                done.add("required")
            out.extend(_messages(e))
        for child in children.get(path, ()):
            visit(child)

    visit(())
    return out


def schema_errors(value, schema: dict) -> list[str]:
    """``value``'s errors against a JSON schema, one line each: ``$.path: what is wrong``."""
    return _errors(value, _validator(json.dumps(schema)))  # key order is the error order


# --- spans ---------------------------------------------------------------------------------------
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


def _non_overlapping(spans: list[dict]) -> list[dict]:
    """Longest first, then leftmost; a span overlapping an accepted one is dropped."""
    taken: list[dict] = []
    for s in sorted(spans, key=lambda s: (s["start"] - s["end"], s["start"], s["label"] or "")):
        if all(s["end"] <= t["start"] or s["start"] >= t["end"] for t in taken):
            taken.append(s)
    return sorted(taken, key=lambda s: (s["start"], s["end"]))


# --- the whole answer ------------------------------------------------------------------------------
def _coerce(task: Task, value):
    """A bare list where the schema wants ``{items: [...]}`` is the list of items."""
    if isinstance(value, list) and task.items:
        return {task.items: value}
    return value


def validate_answer(task: Task, text: str, value) -> tuple[Answer | None, list[str]]:
    value = _coerce(task, value)
    errors = _errors(value, _validator(task.schema_json))
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
                  vote_key(task, clean)), []
