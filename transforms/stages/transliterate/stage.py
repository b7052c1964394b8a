"""Etymology-aware transliteration: policy-driven, per word, with an offset map.

Per row (chosen by its ``lang``), a *policy* labels every word (by its Unicode
script, or by its etymological origin with a trained classifier) and maps labels
to actions: ``keep``, ``romanize`` (uroman), ``fold_diacritics`` or
``transliterate:<table>`` (a rule table). The output text is the concatenation of
the tokens' outputs, and the offset map, rows of ``(src_start, src_end, out_start,
out_end)``, says where each piece of the original went, so labelled spans can
follow (``romanize.map_span``). Rows with spans that cannot follow are rejected.

Core: ``Policy``, ``Transliterator`` (everything one worker needs, built in
``DoFn.setup`` because ``uroman.Uroman`` cannot be pickled), ``map_span``.
``Transliterate`` is the thin Beam transform.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np
import pyarrow as pa
import yaml
from apache_beam.utils import shared

from xlcorpus.schemas import SPAN, TRANSLIT_FIELDS, TRANSLIT_OFFSET, TRANSLIT_TOKEN
from xlcorpus.transforms.core.batch_fn import DEAD_LETTER, KEPT, REJECTED, BatchStageFn, rejected_rows
from xlcorpus.transforms.backends.model_cache import local_copy
from xlcorpus.transforms.core.resources import shipped_dir, shipped_names, shipped_or_path
from xlcorpus.transforms.stages.transliterate.romanize import Romanizer, map_span  # noqa: F401 - map_span is part of this API
from xlcorpus.transforms.stages.transliterate.rule_tables import load_table
from xlcorpus.transforms.text.scripts import majority_scripts
from xlcorpus.transforms.text.tokens import tokenize

log = logging.getLogger(__name__)
STAGE = "transliterate"
ACTIONS = ("keep", "romanize", "fold_diacritics")
ANY_LANGUAGE = "*"


# --- policies -----------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    name: str
    labeler: str  # "script" | "etymology"
    actions: Mapping[str, str]
    default: str = "keep"
    model: str | None = None  # origin classifier (labeler: etymology)

    def __post_init__(self):
        if self.labeler not in ("script", "etymology"):
            raise ValueError(f"policy {self.name}: labeler must be 'script' or 'etymology', got {self.labeler!r}")
        if self.labeler == "etymology" and not self.model:
            raise ValueError(f"policy {self.name}: labeler 'etymology' needs a model")
        for label, action in {**self.actions, "default": self.default}.items():
            if action not in ACTIONS and not action.startswith("transliterate:"):
                raise ValueError(f"policy {self.name}: actions.{label}: expected one of {ACTIONS} or "
                                 f"'transliterate:<table>', got {action!r}")

    def action_for(self, label: str) -> str:
        return self.actions.get(label, self.default)


def shipped_policies() -> list[str]:
    return shipped_names("policies")


@functools.cache
def load_policy(name_or_path: str) -> Policy:
    """A shipped policy by name (``maltese-arabic``, ``romanize-non-latin``) or a YAML path."""
    path = shipped_or_path("policies", name_or_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Policy(name=data.get("name", path.stem), labeler=data.get("labeler", "script"),
                  actions=dict(data.get("actions") or {}), default=data.get("default", "keep"),
                  model=data.get("model"))


def origin_model_path(name_or_path: str) -> str:
    """A shipped origin classifier by name (``mlt-etymology``) or a model folder (local or
    on shared storage, copied to the local cache)."""
    shipped = shipped_dir("models") / name_or_path
    if "/" not in name_or_path and shipped.is_dir():
        return str(shipped)
    return local_copy(name_or_path)


def fold_diacritics(word: str) -> str:
    """Drop combining marks (é -> e, ħ stays: it is a letter, not e + mark)."""
    return unicodedata.normalize("NFC", "".join(c for c in unicodedata.normalize("NFD", word)
                                                if not unicodedata.combining(c)))


# --- the worker-side transliterator ----------------------------------------------------
@dataclass
class Transliterated:
    text: str
    tokens: list[dict]  # word tokens: start, end, origin, action
    offsets: np.ndarray  # (n, 4) int32


class Transliterator:
    """Policies per language plus their tables, classifiers and romanizer."""

    def __init__(self, policies: Mapping[str, str]):
        self.policies = {lang: load_policy(p) for lang, p in policies.items()}
        self._classifiers: dict[str, object] = {}
        self._romanizer = None

    def policy_for(self, lang: str | None) -> Policy | None:
        return self.policies.get(lang or "", self.policies.get(ANY_LANGUAGE))

    def classifier(self, model: str):
        if model not in self._classifiers:
            from xlcorpus.transforms.stages.transliterate.origin import OriginClassifier

            self._classifiers[model] = OriginClassifier.load(origin_model_path(model))
        return self._classifiers[model]

    @property
    def romanizer(self):
        if self._romanizer is None:
            self._romanizer = Romanizer().load()
        return self._romanizer

    def transliterate_batch(self, texts: Sequence[str], langs: Sequence[str | None]) -> list[Transliterated | None]:
        """One result per text (None where no policy applies). Labels are computed in
        one call per labeler, romanization in one batch call."""
        jobs = []  # (row, policy, tokens, word indices)
        for row, (text, lang) in enumerate(zip(texts, langs)):
            policy = self.policy_for(lang)
            if policy is not None and text is not None:
                toks = tokenize(text)
                jobs.append((row, policy, toks, [k for k, t in enumerate(toks) if t.kind == "word"]))
        labels = self._labels(jobs)
        to_romanize = sorted({row for row, policy, toks, widx in jobs
                              if any(policy.action_for(labels[(row, k)]) == "romanize" for k in widx)})
        romanized = dict(zip(to_romanize, zip(*self.romanizer.romanize_batch([texts[r] for r in to_romanize])))) \
            if to_romanize else {}
        out: list[Transliterated | None] = [None] * len(texts)
        for row, policy, toks, widx in jobs:
            out[row] = self._compose(toks, {k: labels[(row, k)] for k in widx}, policy, romanized.get(row))
        return out

    def _labels(self, jobs) -> dict[tuple[int, int], str]:
        labels: dict[tuple[int, int], str] = {}
        by_script = [(row, k, toks[k].text) for row, p, toks, widx in jobs if p.labeler == "script" for k in widx]
        if by_script:
            scripts = majority_scripts(pa.array([w for _, _, w in by_script], pa.string())).to_pylist()
            labels.update({(row, k): s for (row, k, _), s in zip(by_script, scripts)})
        by_model: dict[str, list] = {}
        for row, p, toks, widx in jobs:
            if p.labeler == "etymology":
                by_model.setdefault(p.model, []).extend((row, k, toks[k].text) for k in widx)
        for model, items in by_model.items():
            # the classifier uses sentence context (neighbouring words): one sentence per row
            predicted = self.classifier(model).predict([w for _, _, w in items], [row for row, _, _ in items])
            labels.update({(row, k): label for (row, k, _), label in zip(items, predicted)})
        return labels

    def _compose(self, toks, labels: dict[int, str], policy: Policy, romanized) -> Transliterated:
        actions = [policy.action_for(labels[k]) if k in labels else "keep" for k in range(len(toks))]
        words = [{"start": toks[k].start, "end": toks[k].end, "origin": labels[k], "action": actions[k]}
                 for k in sorted(labels)]
        text = "".join(t.text for t in toks)
        word_actions = {actions[k] for k in labels}
        if word_actions <= {"keep"}:  # nothing to rewrite: one identity row
            return Transliterated(text, words, np.array([[0, len(text), 0, len(text)]], np.int32).reshape(-1, 4)
                                  if text else np.zeros((0, 4), np.int32))
        if word_actions == {"romanize"} and romanized is not None:
            return Transliterated(romanized[0], words, romanized[1])  # every word romanized: uroman's line
        pieces: list[str] = []
        rows: list[tuple[int, int, int, int]] = []
        edges = romanized[1].tolist() if romanized is not None else []
        e = 0  # walks the line's romanization edges alongside the tokens
        pos = 0
        for tok, action in zip(toks, actions):
            if action == "romanize":
                while e < len(edges) and edges[e][0] < tok.start:
                    e += 1
                out, offs = self._romanized_token(tok, romanized, edges, e)
            elif action == "keep":
                out, offs = tok.text, [(0, len(tok.text), 0, len(tok.text))]
            elif action == "fold_diacritics":
                out = fold_diacritics(tok.text)
                offs = [(0, len(tok.text), 0, len(out))]
            else:
                out, table_offs = load_table(action.split(":", 1)[1]).transliterate(tok.text)
                offs = table_offs.tolist()
            rows.extend((s0 + tok.start, s1 + tok.start, o0 + pos, o1 + pos) for s0, s1, o0, o1 in offs)
            pieces.append(out)
            pos += len(out)
        return Transliterated("".join(pieces), words, np.array(rows, np.int32).reshape(-1, 4))

    def _romanized_token(self, tok, romanized, edges: list, e: int) -> tuple[str, list]:
        """The token's part of the whole-line romanization (whole line wins): the edges
        from ``e`` that exactly tile the token; else the token romanized alone."""
        if romanized is not None and e < len(edges) and edges[e][0] == tok.start:
            f = e
            while f < len(edges) and edges[f][1] <= tok.end and (f == e or edges[f][0] == edges[f - 1][1]):
                f += 1
            if f > e and edges[f - 1][1] == tok.end:
                o_s, o_e = edges[e][2], edges[f - 1][3]
                return romanized[0][o_s:o_e], [(a - tok.start, b - tok.start, c - o_s, d - o_s)
                                               for a, b, c, d in edges[e:f]]
        texts, offsets = self.romanizer.romanize_batch([tok.text])
        return texts[0], offsets[0].tolist()


# --- Arrow -------------------------------------------------------------------------------
def transliterate_columns(batch: pa.RecordBatch, tr: Transliterator, spans_column: str | None
                          ) -> tuple[dict[str, pa.Array], list[tuple[str, dict] | None]]:
    """The TRANSLIT_FIELDS columns for a batch, and per row None or (reason, detail)."""
    langs = batch.column("lang").to_pylist() if "lang" in batch.schema.names else [None] * batch.num_rows
    results = tr.transliterate_batch(batch.column("text").to_pylist(), langs)
    spans_in = batch.column(spans_column).to_pylist() if spans_column else [None] * batch.num_rows
    spans_out, verdicts = [], []
    for res, spans in zip(results, spans_in):
        if res is None or spans is None:
            spans_out.append(None)
            verdicts.append(None)
            continue
        moved, lost = [], []
        for span in spans:
            new = map_span(res.offsets, span["start"], span["end"])
            (lost.append(span) if new is None else moved.append({**span, "start": new[0], "end": new[1]}))
        spans_out.append(moved)
        verdicts.append(("span_unmappable", {"spans": lost}) if lost else None)
    policies = [tr.policy_for(lang).name if res is not None else None for lang, res in zip(langs, results)]
    columns = {
        "translit_text": pa.array([r.text if r else None for r in results], pa.string()),
        "translit_policy": pa.array(policies, pa.string()),
        "translit_tokens": pa.array([r.tokens if r else None for r in results], pa.list_(TRANSLIT_TOKEN)),
        "translit_offsets": pa.array([r.offsets.tolist() if r else None for r in results],
                                     pa.list_(TRANSLIT_OFFSET)),
        "translit_spans": pa.array(spans_out, pa.list_(SPAN)),
    }
    return columns, verdicts


@dataclass(frozen=True)
class TransliterateOptions:
    policies: Mapping[str, str] = field(default_factory=dict)  # lang (ISO 639-3 or "*") -> policy
    spans_column: str | None = None  # list<struct<start, end, label>> to carry over


def annotate(batch: pa.RecordBatch, tr: Transliterator, opts: TransliterateOptions
             ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    columns, verdicts = transliterate_columns(batch, tr, opts.spans_column)
    tagged = batch
    for f in TRANSLIT_FIELDS:
        tagged = tagged.append_column(f, columns[f.name])
    bad = np.array([v is not None for v in verdicts], bool)
    if not bad.any():
        return tagged, None
    rows = np.flatnonzero(bad)
    return (tagged.filter(pa.array(~bad)),
            rejected_rows(batch, rows, [verdicts[i][0] for i in rows], [verdicts[i][1] for i in rows], STAGE))


_SHARED = shared.Shared()


class _Holder:
    def __init__(self, tr: Transliterator):
        self.tr = tr


class _TransliterateFn(BatchStageFn):
    stage = STAGE
    dead_reason = "transliteration_error"

    def __init__(self, opts: TransliterateOptions):
        super().__init__()
        self.opts = opts

    def setup(self):
        key = repr(sorted(self.opts.policies.items()))
        self.tr = _SHARED.acquire(lambda: _Holder(Transliterator(self.opts.policies)), tag=key).tr

    def step(self, batch: pa.RecordBatch):
        return annotate(batch, self.tr, self.opts)


class Transliterate(beam.PTransform):
    """PCollection[RecordBatch] -> outputs kept / rejected / dead_letter."""

    def __init__(self, opts: TransliterateOptions):
        super().__init__()
        for policy in opts.policies.values():
            load_policy(policy)  # fail at construction, not on the workers
        self.opts = opts

    def expand(self, batches):
        return batches | "Transliterate" >> beam.ParDo(_TransliterateFn(self.opts)).with_outputs(
            REJECTED, DEAD_LETTER, main=KEPT)
