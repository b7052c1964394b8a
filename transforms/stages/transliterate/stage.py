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
from xlcorpus.transforms.text.scripts import span_scripts
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
    the batch) its policy (an index into ``policies``), text and offset map; per word of
    those rows, in order, the row (an index into ``rows``), [start, end), and its origin
    label and action as indices into ``origin_names`` and ``action_names``."""
    rows: list[int]
    row_policy: np.ndarray
    policies: list[Policy]
    texts: list[str]
    offsets: list[np.ndarray]
    word_row: np.ndarray
    word_start: np.ndarray
    word_end: np.ndarray
    origin_ids: np.ndarray
    origin_names: list[str]
    action_ids: np.ndarray
    action_names: list[str]

    @property
    def origins(self) -> list[str]:
        return [self.origin_names[i] for i in self.origin_ids.tolist()]

    @property
    def actions(self) -> list[str]:
        return [self.action_names[i] for i in self.action_ids.tolist()]


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
        starts, ends, origins, actions = res.word_start.tolist(), res.word_end.tolist(), res.origins, res.actions
        for j, row in enumerate(res.rows):
            words = [{"start": starts[k], "end": ends[k], "origin": origins[k], "action": actions[k]}
                     for k in range(bounds[j], bounds[j + 1])]
            out[row] = Transliterated(res.texts[j], words, res.offsets[j])
        return out

    def transliterate_rows(self, texts: Sequence[str], langs: Sequence[str | None]) -> TransliteratedRows:
        """The batch's results, column-wise (arrays per word, no Token objects): words found for
        all rows in one pass, labelled in one call per labeler, their actions looked up
        per (policy, label); rows whose words are all kept, or all romanized, need no
        per-token work (the text itself, or uroman's line); only rows that mix actions
        are tokenized fully and composed token by token."""
        rows, row_policy, policies = self._policies(texts, langs)
        row_texts = [texts[r] for r in rows]
        words = word_spans(row_texts)
        word_policy = row_policy[words.row]
        origin_ids, origin_names = self._labels(words, rows, word_policy, policies)
        action_ids, action_names = _actions(word_policy, origin_ids, origin_names, policies)
        n_words = np.bincount(words.row, minlength=len(rows))
        n_keep, n_romanize = (
            np.bincount(words.row[action_ids == action_names.index(a)], minlength=len(rows))
            if a in action_names else np.zeros(len(rows), np.int64) for a in ("keep", "romanize"))
        to_romanize = np.flatnonzero(n_romanize).tolist()
        romanized = dict(zip(to_romanize, zip(*self.romanizer.romanize_batch([row_texts[j] for j in to_romanize])))) \
            if to_romanize else {}
        mixed = ((n_keep < n_words) & ~((n_romanize == n_words) & (n_words > 0))).tolist()
        bounds = np.searchsorted(words.row, np.arange(len(rows) + 1)).tolist()
        out_texts, out_offsets = [], []
        for j, text in enumerate(row_texts):
            if mixed[j]:
                result = self._compose(text, [action_names[a] for a in action_ids[bounds[j]:bounds[j + 1]].tolist()],
                                       romanized.get(j))
            elif j in romanized:  # every word romanized: uroman's line
                result = romanized[j]
            else:  # nothing to rewrite: one identity row
                result = text, (np.array([[0, len(text), 0, len(text)]], np.int32) if text else _NO_OFFSETS)
            out_texts.append(result[0])
            out_offsets.append(result[1])
        return TransliteratedRows(rows, row_policy, policies, out_texts, out_offsets, words.row, words.start,
                                  words.end, origin_ids, origin_names, action_ids, action_names)

    def _policies(self, texts: Sequence[str], langs: Sequence[str | None]) -> tuple[list[int], np.ndarray, list]:
        """The rows with a text and a policy, each one's policy (an index into the list of
        distinct policies), and that list; the policy looked up once per language."""
        rows: list[int] = []
        row_policy: list[int] = []
        policies: list[Policy] = []
        by_lang: dict[str | None, int | None] = {}
        for row, (text, lang) in enumerate(zip(texts, langs)):
            if text is None:
                continue
            if lang not in by_lang:
                policy = self.policy_for(lang)
                known = [k for k, p in enumerate(policies) if p is policy]
                if policy is not None and not known:
                    policies.append(policy)
                by_lang[lang] = None if policy is None else (known or [len(policies) - 1])[0]
            if (k := by_lang[lang]) is not None:
                rows.append(row)
                row_policy.append(k)
        return rows, np.array(row_policy, np.int64), policies

    def _labels(self, words: WordSpans, rows: list[int], word_policy: np.ndarray, policies: list[Policy]
                ) -> tuple[np.ndarray, list[str]]:
        """Each word's label, as an index into a list of labels: one call per labeler (all
        rows' words at once)."""
        labelers = [(p.labeler, p.model if p.labeler == "etymology" else None) for p in policies]
        distinct = list(dict.fromkeys(labelers))
        ids = np.zeros(len(words.text), np.int64)
        vocabulary: dict[str, int] = {}
        for labeler, model in distinct:
            members = np.flatnonzero(np.isin(word_policy, [k for k, key in enumerate(labelers)
                                                           if key == (labeler, model)]))
            if len(members) == 0:  # no word to label: no classifier to load
                continue
            if labeler == "script":
                at = words.at[members]
                found, names = span_scripts(words.joined, at, at + (words.end - words.start)[members])
            else:  # the classifier uses sentence context (neighbouring words): one sentence per row
                classifier = self.classifier(model)
                found = classifier.predict_indices([words.text[k] for k in members.tolist()],
                                                   np.asarray(rows)[words.row[members]].tolist())
                names = classifier.labels
            ids[members] = np.array([vocabulary.setdefault(name, len(vocabulary)) for name in names],
                                    np.int64)[found]
        return ids, list(vocabulary)

    def _compose(self, text: str, word_actions: list[str], romanized) -> tuple[str, np.ndarray]:
        """A row whose words take different actions, token by token; spaces, numbers and
        punctuation are kept."""
        toks = tokenize(text)
        actions = ["keep"] * len(toks)
        # strict: the batch's word split and tokenize's words agree (tested); never misalign silently
        for k, action in zip([k for k, t in enumerate(toks) if t.kind == "word"], word_actions, strict=True):
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


def _actions(word_policy: np.ndarray, origin_ids: np.ndarray, origin_names: list[str], policies: list[Policy]
             ) -> tuple[np.ndarray, list[str]]:
    """Each word's action under its row's policy (an index into a list of actions),
    looked up once per (policy, label)."""
    vocabulary: dict[str, int] = {}
    table = np.array([[vocabulary.setdefault(p.action_for(name), len(vocabulary)) for name in origin_names]
                      for p in policies], np.int64).reshape(len(policies), len(origin_names))
    return table[word_policy, origin_ids], list(vocabulary)


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
    names = [p.name for p in res.policies]
    for j, (row, k) in enumerate(zip(res.rows, res.row_policy.tolist())):
        texts[row], policies[row], offsets[row] = res.texts[j], names[k], res.offsets[j]
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
    per word; labels and actions decoded by Arrow); null where no policy applied."""
    words = pa.StructArray.from_arrays(
        [pa.array(res.word_start, pa.int32()), pa.array(res.word_end, pa.int32()),
         _decoded(res.origin_ids, res.origin_names), _decoded(res.action_ids, res.action_names)],
        fields=list(TRANSLIT_TOKEN))
    sizes = np.zeros(n, np.int64)
    sizes[res.rows] = np.bincount(res.word_row, minlength=len(res.rows))
    null = np.ones(n, bool)
    null[res.rows] = False
    return pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(sizes)].astype(np.int32)), words,
                                    type=pa.list_(TRANSLIT_TOKEN), mask=pa.array(null) if null.any() else None)


def _decoded(ids: np.ndarray, names: list[str]) -> pa.Array:
    """A string column from indices into ``names``."""
    if len(ids) == 0:
        return pa.array([], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(ids, pa.int32()), pa.array(names, pa.string())).cast(pa.string())


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
