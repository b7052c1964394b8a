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
from xlcorpus.transforms.text.tokens import WordSpans, tokenize, word_spans

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


@dataclass
class TransliteratedRows:
    """A batch's results, column-wise: per row with a policy (``rows``: their indices in
    the batch) its text and offset map; per word of those rows, in order, the row (an
    index into ``rows``), [start, end), origin label and action."""
    rows: list[int]
    policies: list[Policy]
    texts: list[str]
    offsets: list[np.ndarray]
    word_row: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray
    origins: list[str]
    actions: list[str]


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
        """One result per text (None where no policy applies)."""
        res = self.transliterate_rows(texts, langs)
        out: list[Transliterated | None] = [None] * len(texts)
        bounds = np.searchsorted(res.word_row, np.arange(len(res.rows) + 1)).tolist()
        starts, ends = res.word_start.tolist(), res.word_end.tolist()
        for j, row in enumerate(res.rows):
            words = [{"start": starts[k], "end": ends[k], "origin": res.origins[k], "action": res.actions[k]}
                     for k in range(bounds[j], bounds[j + 1])]
            out[row] = Transliterated(res.texts[j], words, res.offsets[j])
        return out

    def transliterate_rows(self, texts: Sequence[str], langs: Sequence[str | None]) -> TransliteratedRows:
        """The batch's results, column-wise (no Python object per word): words found for
        all rows in one pass, labelled in one call per labeler, their actions looked up
        per distinct label; rows whose words are all kept, or all romanized, need no
        per-token work (the text itself, or uroman's line); only rows that mix actions
        are tokenized fully and composed token by token."""
        rows, policies = [], []
        for row, (text, lang) in enumerate(zip(texts, langs)):
            policy = self.policy_for(lang)
            if policy is not None and text is not None:
                rows.append(row)
                policies.append(policy)
        row_texts = [texts[r] for r in rows]
        words = word_spans(row_texts)
        origins = self._labels(words, rows, policies)
        actions = _actions(words.row, origins, policies)
        n_words = np.bincount(words.row, minlength=len(rows))
        is_keep = np.fromiter((a == "keep" for a in actions), bool, len(actions))
        is_romanize = np.fromiter((a == "romanize" for a in actions), bool, len(actions))
        n_keep = np.bincount(words.row[is_keep], minlength=len(rows))
        n_romanize = np.bincount(words.row[is_romanize], minlength=len(rows))
        to_romanize = np.flatnonzero(n_romanize).tolist()
        romanized = dict(zip(to_romanize, zip(*self.romanizer.romanize_batch([row_texts[j] for j in to_romanize])))) \
            if to_romanize else {}
        mixed = (n_keep < n_words) & ~((n_romanize == n_words) & (n_words > 0))
        bounds = np.searchsorted(words.row, np.arange(len(rows) + 1)).tolist()
        out_texts, out_offsets = [], []
        for j, text in enumerate(row_texts):
            if j in romanized and not mixed[j]:  # every word romanized: uroman's line
                result = romanized[j]
            elif not mixed[j]:  # nothing to rewrite: one identity row
                result = text, (np.array([[0, len(text), 0, len(text)]], np.int32) if text else _NO_OFFSETS)
            else:
                result = self._compose(text, actions[bounds[j]:bounds[j + 1]], romanized.get(j))
            out_texts.append(result[0])
            out_offsets.append(result[1])
        return TransliteratedRows(rows, policies, out_texts, out_offsets, words.row, words.start, words.end,
                                  origins, actions)

    def _labels(self, words: WordSpans, rows: list[int], policies: list[Policy]) -> list[str]:
        """Each word's label: one call per labeler (all rows' words at once)."""
        labelers = [(p.labeler, p.model if p.labeler == "etymology" else None) for p in policies]  # hashable
        distinct = list(dict.fromkeys(labelers))
        labels: list[str] = [""] * len(words.text)
        word_labeler = np.array([distinct.index(k) for k in labelers], np.int64)[words.row] if len(distinct) > 1 \
            else None
        for i, (labeler, model) in enumerate(distinct):
            members = np.arange(len(words.text)) if word_labeler is None else np.flatnonzero(word_labeler == i)
            texts = words.text if word_labeler is None else [words.text[k] for k in members.tolist()]
            if labeler == "script":
                predicted = majority_scripts(pa.array(texts, pa.string())).to_pylist()
            else:  # the classifier uses sentence context (neighbouring words): one sentence per row
                predicted = self.classifier(model).predict(texts, np.asarray(rows)[words.row[members]].tolist())
            if word_labeler is None:
                return list(predicted)
            for k, label in zip(members.tolist(), predicted):
                labels[k] = label
        return labels

    def _compose(self, text: str, word_actions: list[str], romanized) -> tuple[str, np.ndarray]:
        """A row whose words take different actions, token by token; spaces, numbers and
        punctuation are kept."""
        toks = tokenize(text)
        actions = ["keep"] * len(toks)
        for k, action in zip([k for k, t in enumerate(toks) if t.kind == "word"], word_actions):
            actions[k] = action
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
        return "".join(pieces), np.array(rows, np.int32).reshape(-1, 4)

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


def _actions(word_row: np.ndarray, origins: list[str], policies: list[Policy]) -> list[str]:
    """Each word's action under its row's policy, looked up once per (policy, label)."""
    index = {key: i for i, key in enumerate(dict.fromkeys(map(id, policies)))}  # policies are not hashable
    distinct = {id(p): p for p in policies}
    labels = set(origins)
    table = [{label: distinct[key].action_for(label) for label in labels} for key in index]
    if len(table) == 1:
        return list(map(table[0].__getitem__, origins))
    word_policy = np.array([index[id(p)] for p in policies], np.int64)[word_row].tolist()
    return [table[p][label] for p, label in zip(word_policy, origins)]


_NO_OFFSETS = np.zeros((0, 4), np.int32)
_NO_OFFSETS.flags.writeable = False


# --- Arrow -------------------------------------------------------------------------------
def transliterate_columns(batch: pa.RecordBatch, tr: Transliterator, spans_column: str | None
                          ) -> tuple[dict[str, pa.Array], list[tuple[str, dict] | None]]:
    """The TRANSLIT_FIELDS columns for a batch, and per row None or (reason, detail)."""
    n = batch.num_rows
    langs = batch.column("lang").to_pylist() if "lang" in batch.schema.names else [None] * n
    res = tr.transliterate_rows(batch.column("text").to_pylist(), langs)
    texts: list[str | None] = [None] * n
    policies: list[str | None] = [None] * n
    offsets: list[np.ndarray | None] = [None] * n
    for j, row in enumerate(res.rows):
        texts[row], policies[row], offsets[row] = res.texts[j], res.policies[j].name, res.offsets[j]
    spans_in = batch.column(spans_column).to_pylist() if spans_column else [None] * n
    spans_out, verdicts = [], []
    for row_offsets, spans in zip(offsets, spans_in):
        if row_offsets is None or spans is None:
            spans_out.append(None)
            verdicts.append(None)
            continue
        moved, lost = [], []
        for span in spans:
            new = map_span(row_offsets, span["start"], span["end"])
            (lost.append(span) if new is None else moved.append({**span, "start": new[0], "end": new[1]}))
        spans_out.append(moved)
        verdicts.append(("span_unmappable", {"spans": lost}) if lost else None)
    columns = {
        "translit_text": pa.array(texts, pa.string()),
        "translit_policy": pa.array(policies, pa.string()),
        "translit_tokens": _tokens_column(res, n),
        "translit_offsets": _offsets_column(offsets),
        "translit_spans": pa.array(spans_out, pa.list_(SPAN)),
    }
    return columns, verdicts


def _tokens_column(res: TransliteratedRows, n: int) -> pa.Array:
    """The rows' words as one list<TRANSLIT_TOKEN> column, from the word arrays (no dict
    per word); null where no policy applied."""
    words = pa.StructArray.from_arrays(
        [pa.array(res.word_start, pa.int32()), pa.array(res.word_end, pa.int32()),
         pa.array(res.origins, pa.string()), pa.array(res.actions, pa.string())], fields=list(TRANSLIT_TOKEN))
    sizes = np.zeros(n, np.int64)
    sizes[res.rows] = np.bincount(res.word_row, minlength=len(res.rows))
    null = np.ones(n, bool)
    null[res.rows] = False
    return pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(sizes)].astype(np.int32)), words,
                                    type=pa.list_(TRANSLIT_TOKEN), mask=pa.array(null) if null.any() else None)


def _offsets_column(maps: Sequence[np.ndarray | None]) -> pa.Array:
    """The rows' offset maps (None: no policy) as one list<fixed_size_list<int32, 4>>
    column, built from one concatenated int32 array: no Python list per edge (millions
    of small lists made the garbage collector the stage's main cost)."""
    present = [m for m in maps if m is not None]
    sizes = np.array([len(m) if m is not None else 0 for m in maps], np.int32)
    flat = np.concatenate(present).astype(np.int32, copy=False).ravel() if present else np.zeros(0, np.int32)
    edges = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.int32()), 4).cast(TRANSLIT_OFFSET)
    null = np.array([m is None for m in maps], bool)
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
