"""Etymology-aware transliteration: policy-driven, per word, with an offset map.

Per row (chosen by its ``lang``), a *policy* labels every word (by its Unicode
script, or by its etymological origin with a trained classifier) and maps labels
to actions: ``keep``, ``romanize`` (uroman), ``fold_diacritics`` or
``transliterate:<table>`` (a rule table). The output text is the concatenation of
the tokens' outputs, and the offset map, rows of ``(src_start, src_end, out_start,
out_end)``, says where each piece of the original went, so labelled spans can
follow (``romanize.map_span``). Rows with spans that cannot follow are rejected.

No Beam here: ``Transliterator`` (everything one worker needs, built in
``Transliterate.setup`` because ``uroman.Uroman`` cannot be pickled), ``map_span``,
and ``Transliterate``, the stage (policies: ``policies``; options: ``options``).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import pyarrow as pa

from xlcorpus.schemas import SPAN, TRANSLIT_FIELDS, TRANSLIT_OFFSET, TRANSLIT_TOKEN
from xlcorpus.transforms.core.accounting import append_columns, split_rows
from xlcorpus.transforms.core.models import shared_model
from xlcorpus.transforms.core.stage import Stage, StageResult
from xlcorpus.transforms.stages.transliterate.options import TransliterateOptions
from xlcorpus.transforms.stages.transliterate.policies import ANY_LANGUAGE, Policy, load_policy, origin_model_path
from xlcorpus.transforms.stages.transliterate.romanize import Romanizer, map_span  # noqa: F401 - map_span is part of this API
from xlcorpus.transforms.stages.transliterate.rule_tables import load_table
from xlcorpus.transforms.text.languages import normalize_lang_code
from xlcorpus.transforms.text.scripts import majority_scripts
from xlcorpus.transforms.text.tokens import tokenize

STAGE = "transliterate"


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
        labels = self._labels(jobs)  # per job, one label per word
        to_romanize = sorted({row for (row, policy, _, _), job_labels in zip(jobs, labels)
                              if "romanize" in map(policy.action_for, job_labels)})
        romanized = dict(zip(to_romanize, zip(*self.romanizer.romanize_batch([texts[r] for r in to_romanize])))) \
            if to_romanize else {}
        out: list[Transliterated | None] = [None] * len(texts)
        for (row, policy, toks, widx), job_labels in zip(jobs, labels):
            out[row] = self._compose(toks, widx, job_labels, policy, romanized.get(row))
        return out

    def _labels(self, jobs) -> list[list[str]]:
        """Each job's word labels, in word order: one call per labeler (all rows' words at once)."""
        labels: list[list[str]] = [[] for _ in jobs]
        by_labeler: dict[tuple[str, str | None], list[int]] = {}
        for j, (_, p, _, widx) in enumerate(jobs):
            if widx:
                by_labeler.setdefault((p.labeler, p.model if p.labeler == "etymology" else None), []).append(j)
        for (labeler, model), members in by_labeler.items():
            words = [jobs[j][2][k].text for j in members for k in jobs[j][3]]
            if labeler == "script":
                predicted = majority_scripts(pa.array(words, pa.string())).to_pylist()
            else:  # the classifier uses sentence context (neighbouring words): one sentence per row
                predicted = self.classifier(model).predict(words, [jobs[j][0] for j in members for _ in jobs[j][3]])
            pos = 0
            for j in members:
                n = len(jobs[j][3])
                labels[j] = list(predicted[pos:pos + n])
                pos += n
        return labels

    def _compose(self, toks, widx: list[int], word_labels: list[str], policy: Policy, romanized) -> Transliterated:
        word_actions = list(map(policy.action_for, word_labels))
        actions = ["keep"] * len(toks)
        for k, action in zip(widx, word_actions):
            actions[k] = action
        words = [{"start": toks[k].start, "end": toks[k].end, "origin": label, "action": action}
                 for k, label, action in zip(widx, word_labels, word_actions)]
        text = "".join([t.text for t in toks])
        distinct = set(word_actions)
        if distinct <= {"keep"}:  # nothing to rewrite: one identity row
            return Transliterated(text, words, np.array([[0, len(text), 0, len(text)]], np.int32).reshape(-1, 4)
                                  if text else np.zeros((0, 4), np.int32))
        if distinct == {"romanize"} and romanized is not None:
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
        "translit_offsets": _offsets_column(results),
        "translit_spans": pa.array(spans_out, pa.list_(SPAN)),
    }
    return columns, verdicts


def _offsets_column(results: Sequence[Transliterated | None]) -> pa.Array:
    """The rows' offset maps as one list<fixed_size_list<int32, 4>> column, built from one
    concatenated int32 array: no Python list per edge (millions of small lists made the
    garbage collector the stage's main cost)."""
    maps = [r.offsets for r in results if r is not None]
    sizes = np.array([len(r.offsets) if r is not None else 0 for r in results], np.int32)
    flat = np.concatenate(maps).astype(np.int32, copy=False).ravel() if maps else np.zeros(0, np.int32)
    edges = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.int32()), 4).cast(TRANSLIT_OFFSET)
    null = np.array([r is None for r in results], bool)
    return pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(sizes)].astype(np.int32)), edges,
                                    type=pa.list_(TRANSLIT_OFFSET), mask=pa.array(null) if null.any() else None)


def annotate(batch: pa.RecordBatch, tr: Transliterator, opts: TransliterateOptions
             ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """(kept rows with TRANSLIT_FIELDS, rejected rows or None)."""
    columns, verdicts = transliterate_columns(batch, tr, opts.spans_column)
    return split_rows(batch, append_columns(batch, TRANSLIT_FIELDS, columns), verdicts, STAGE)


# --- the stage ---------------------------------------------------------------------------
class Transliterate(Stage[TransliterateOptions]):
    """Per-row policy transliteration: adds TRANSLIT_FIELDS; rejects rows whose spans
    cannot follow. The Transliterator (uroman, tables, classifiers) is built once per
    worker process: ``uroman.Uroman`` cannot be pickled."""

    name = STAGE
    Options = TransliterateOptions
    fields = TRANSLIT_FIELDS
    dead_reason = "transliteration_error"

    def __init__(self, options: TransliterateOptions | None = None, **context):
        super().__init__(options, **context)
        # rows carry ISO 639-3 codes (langid); the config may say ISO 639-1
        self.policies = {k if k == ANY_LANGUAGE else normalize_lang_code(k): v
                         for k, v in self.options.policies.items()}
        self.tr: Transliterator | None = None

    def check(self) -> None:
        for policy in self.policies.values():
            load_policy(policy)

    def setup(self) -> None:
        policies = self.policies
        self.tr = shared_model(repr(sorted(policies.items())), lambda: Transliterator(policies))

    def process(self, batch: pa.RecordBatch) -> StageResult:
        return StageResult(*annotate(batch, self.tr, self.options))

    def report(self) -> dict:
        return {"policies": self.options.policies, "uroman": version("uroman")}
