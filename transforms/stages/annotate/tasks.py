"""Annotation tasks: a template file (shipped ``ner``, ``openie``, ``classify``,
``freeform``, or a path) with a system prompt, a stage-1 ``extract`` prompt, a stage-2
``verify`` prompt that sees stage 1's answer, a ``repair`` prompt, the answer's JSON
schema and which answer fields are spans or labels."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import yaml

from xlcorpus.transforms.core.resources import shipped_names, shipped_or_path
from xlcorpus.transforms.stages.annotate.options import AnnotateConfigError
from xlcorpus.transforms.stages.annotate.validate import schema_problem

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
    task = Task(name=data.get("name", path.stem), system=data["system"], extract=data["extract"],
                verify=data["verify"], repair=data["repair"], schema=data["schema"],
                labels=tuple(data.get("labels") or ()), items=answer.get("items"),
                span_fields=tuple(answer.get("span_fields") or ()), label_field=answer.get("label_field"),
                all_occurrences=bool(answer.get("all_occurrences")),
                source_hash=hashlib.sha256(source).hexdigest())
    problem = schema_problem(task.response_schema)  # a broken schema would reject every answer
    if problem:
        raise AnnotateConfigError(f"annotate.task: {path}: schema: {problem}")
    return task
