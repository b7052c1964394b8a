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
Core: ``Projector`` (pure, over lists); ``ProjectLabels`` is the thin Beam transform.
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import logging
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.utils import shared
from xlcorpus.schemas import PROJECTION_SCHEMA
from xlcorpus.transforms.core.batch_fn import (
    DEAD_LETTER,
    KEPT,
    REJECTED,
    BatchStageFn,
    rejected_rows,
)
from xlcorpus.transforms.backends.mt import SPACE, MTBackend, MTOptions
from xlcorpus.transforms.text.tokens import tokenize

log = logging.getLogger(__name__)
STAGE = "project"
METHODS = ("constrained", "marker", "alignment")
MODES = ("translate-train", "translate-test")
Predictor = Callable[[list[str]], list[list[dict]]]  # texts -> spans {start, end, label} per text


@dataclass(frozen=True)
class ProjectionOptions:
    method: str = "constrained"
    mode: str = "translate-train"
    labels: tuple[str, ...] = ()  # entity types; IOB2 names are O, B-x, I-x in this order
    label_names: tuple[str, ...] = ()  # explicit IOB2 names (e.g. from an HF input's ClassLabel)
    open_marker: str = "["
    close_marker: str = "]"
    boundaries: str = "word"  # constrained/alignment target positions: word | piece
    exhaustive: bool = False  # constrained: score every placement (reference for the pruned search)
    score_chunk: int = 1  # constrained: placements scored per model request
    margin: float = 1e-3  # constrained: bounds within this of the best are still explored (float noise)
    fuzzy_threshold: float = 0.0  # marker: minimum rapidfuzz ratio of a fuzzy match (0-100)
    beam_size: int | None = None  # translation beam (default: the backend's)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"projection.method must be one of {METHODS}, got {self.method!r}")
        if self.mode not in MODES:
            raise ValueError(f"projection.mode must be one of {MODES}, got {self.mode!r}")
        if self.boundaries not in ("word", "piece"):
            raise ValueError(f"projection.boundaries must be 'word' or 'piece', got {self.boundaries!r}")
        if self.score_chunk < 1:
            raise ValueError("projection.score_chunk must be >= 1")

    def iob2_names(self) -> list[str]:
        if self.label_names:
            return list(self.label_names)
        return iob2_names(self.labels)


def iob2_names(labels: Sequence[str]) -> list[str]:
    return ["O"] + [f"{p}-{label}" for label in labels for p in ("B", "I")]


# --- results ------------------------------------------------------------------------
@dataclass
class Projected:
    """One projected sentence, or a rejection (``reason`` set)."""

    text: str = ""
    spans: list[dict] = field(default_factory=list)  # {start, end, label} on text
    span_scores: list[float] = field(default_factory=list)
    translation_score: float | None = None
    reason: str | None = None
    detail: dict | None = None
    sequences: int = 0  # sequences sent through the model for this sentence
    scored: int = 0  # constrained: placements scored exactly
    src_text: str | None = None  # translate-test: the translation the labels were predicted on
    src_spans: list[dict] | None = None  # translate-test: the predicted labels


# --- text helpers (pure) ---------------------------------------------------------------
def mark(text: str, spans: Sequence[dict], open_marker: str = "[", close_marker: str = "]") -> str:
    """``text`` with each span wrapped as ``[ span ]`` (markers spaced off, as words)."""
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s["start"]):
        a, b = s["start"], s["end"]
        out.append(text[pos:a])
        if a > 0 and not text[a - 1].isspace():
            out.append(" ")
        out.append(f"{open_marker} {text[a:b]} {close_marker}")
        if b < len(text) and not text[b].isspace():
            out.append(" ")
        pos = b
    out.append(text[pos:])
    return "".join(out)


def detokenize(pieces: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """SentencePiece detokenization with each piece's character offsets (a piece's
    word-start space is not part of its offsets)."""
    chars, offsets, pos = [], [], 0
    for p in pieces:
        s = p.replace(SPACE, " ")
        if pos == 0 and s.startswith(" "):
            s = s.lstrip(" ")
            lead = 0
        else:
            lead = len(s) - len(s.lstrip(" "))
        chars.append(s)
        offsets.append((pos + lead, pos + len(s)))
        pos += len(s)
    return "".join(chars), offsets


def boundaries(pieces: Sequence[str], kind: str = "word") -> list[int]:
    """Positions (0..len) where a marker may go: word starts and the end ('word'), or
    between any two pieces ('piece')."""
    n = len(pieces)
    if kind == "piece":
        return list(range(n + 1))
    return [k for k in range(n) if k == 0 or pieces[k].startswith(SPACE)] + [n]


def word_ids(pieces: Sequence[str]) -> list[int]:
    """Word index of each piece (a piece starting with the SentencePiece space starts a word)."""
    out, w = [], -1
    for k, p in enumerate(pieces):
        if k == 0 or p.startswith(SPACE):
            w += 1
        out.append(w)
    return out


def to_original(text: str, det: str, offsets: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """Piece offsets on ``det`` (the detokenized pieces) moved onto ``text`` when the two
    differ only in whitespace (SentencePiece normalises it); None if they differ more."""
    if det == text:
        return offsets
    a_words = [(m.start(), m.end()) for m in re.finditer(r"\S+", det)]
    b_words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if len(a_words) != len(b_words) or any(det[a:b] != text[c:d] for (a, b), (c, d) in zip(a_words, b_words)):
        return None
    shift = {}
    for (a, b), (c, _d) in zip(a_words, b_words):
        for k in range(a, b + 1):
            shift[k] = c - a
    return [(s + shift.get(s, 0), e + shift.get(e, shift.get(e - 1, 0))) for s, e in offsets]


def tokens_and_tags(text: str, spans: Sequence[dict], names: Sequence[str]) -> tuple[list[str], list[int]]:
    """Words of ``text`` (split further at span edges inside a word) and IOB2 tag ids."""
    index = {n: k for k, n in enumerate(names)}
    cuts = sorted({s["start"] for s in spans} | {s["end"] for s in spans})
    toks: list[tuple[int, int]] = []
    for t in tokenize(text):
        if t.kind == "space":
            continue
        a = t.start
        for c in cuts:
            if t.start < c < t.end:
                toks.append((a, c))
                a = c
        toks.append((a, t.end))
    tags = []
    for a, b in toks:
        tag = "O"
        for s in spans:
            if s["start"] <= a and b <= s["end"]:
                tag = ("B-" if not any(s["start"] <= a2 and b2 <= s["end"] for a2, b2 in toks if b2 <= a)
                       else "I-") + s["label"]
                break
        if tag not in index:
            raise KeyError(f"label {tag!r} is not among the ClassLabel names {list(names)}")
        tags.append(index[tag])
    return [text[a:b] for a, b in toks], tags


def overlapping(spans: Sequence[dict]) -> tuple[dict, dict] | None:
    ordered = sorted(spans, key=lambda s: (s["start"], s["end"]))
    for a, b in itertools.pairwise(ordered):
        if b["start"] < a["end"]:
            return a, b
    return None


def parse_markers(text: str, open_marker: str = "[", close_marker: str = "]"
                  ) -> tuple[str, list[tuple[int, int]]] | str:
    """Marked translation -> (clean text, bracketed spans on it), or a failure reason
    (``malformed_markers``: unbalanced or nested; ``empty_marker``: nothing inside)."""
    pattern = re.compile(f"({re.escape(open_marker)}|{re.escape(close_marker)}|[^\\s{re.escape(open_marker)}"
                         f"{re.escape(close_marker)}]+)")
    clean: list[str] = []
    spans: list[tuple[int, int]] = []
    prev_end, start = None, None
    out_pos = 0
    for m in pattern.finditer(text):
        tok = m.group()
        if tok == open_marker:
            if start is not None:
                return "malformed_markers"
            start = -1  # set by the next word
        elif tok == close_marker:
            if start is None:
                return "malformed_markers"
            if start == -1:
                return "empty_marker"
            spans.append((start, out_pos))
            start = None
        else:
            if prev_end is not None and clean:
                gap = text[prev_end:m.start()]
                glued = not any(c.isspace() for c in gap)
                if not glued:
                    clean.append(" ")
                    out_pos += 1
            if start == -1:
                start = out_pos
            clean.append(tok)
            out_pos += len(tok)
        prev_end = m.end()
    if start is not None:
        return "malformed_markers"
    return "".join(clean), spans


# --- constrained search --------------------------------------------------------------
Request = tuple  # ("along", source, target) | ("score", source, [targets])


@dataclass
class SearchResult:
    placement: tuple[int, int] | None  # (open, close) template positions
    score: float = float("-inf")  # exact log-prob of the best marked template
    scored: int = 0  # placements scored exactly
    sequences: int = 0  # sequences sent through the model (bound passes + scored)


def insert_markers(template: Sequence[str], i: int, j: int, opens: Sequence[str], closes: Sequence[str]
                   ) -> list[str]:
    return list(template[:i]) + list(opens) + list(template[i:j]) + list(closes) + list(template[j:])


def placements(template: Sequence[str], kind: str) -> list[tuple[int, int]]:
    b = boundaries(template, kind)
    return [(i, j) for i in b[:-1] for j in b if j > i]


def constrained_search(source: list[str], template: list[str], opens: list[str], closes: list[str],
                       kind: str = "word", exhaustive: bool = False, chunk: int = 1, margin: float = 1e-3,
                       open_id: int = 0, close_id: int = 0) -> Generator[Request, object, SearchResult]:
    """Best marker placement for one entity (a generator: yields model requests, is
    sent their results, returns a SearchResult)."""
    cands = placements(template, kind)
    res = SearchResult(None)
    if not cands:
        return res
    if exhaustive:
        seqs = [insert_markers(template, i, j, opens, closes) for i, j in cands]
        lps = yield ("score", source, seqs)
        scores = [float(lp.sum()) for lp in lps]
        best = int(np.argmax(scores))
        res.placement, res.score = cands[best], scores[best]
        res.scored = res.sequences = len(cands)
        return res
    n_open = len(opens)
    opening = sorted({i for i, _ in cands})
    closing = {i: [j for i2, j in cands if i2 == i] for i in opening}
    # Level 1: exact prefix log-probs along the template, + log p(first open piece).
    tok_lp, cols = yield ("along", source, template, (open_id, close_id))
    res.sequences += 1
    prefix = np.concatenate([[0.0], np.cumsum(tok_lp)])
    heap: list[tuple[float, int, int, int]] = []  # (-bound, level, i, j): best bound first
    for i in opening:
        heapq.heappush(heap, (-(prefix[i] + cols[i, 0]), 0, i, -1))
    best = float("-inf")
    while heap:
        if -heap[0][0] < best - margin:
            break  # nothing left can beat the best exact score
        _bound, level, i, j = heapq.heappop(heap)
        if level == 0:  # expand an opening position: bound each close position
            marked = list(template[:i]) + list(opens) + list(template[i:])
            tok_lp_i, cols_i = yield ("along", source, marked, (open_id, close_id))
            res.sequences += 1
            run = np.concatenate([[0.0], np.cumsum(tok_lp_i)])
            for jj in closing[i]:
                pos = jj + n_open  # position of boundary jj in the marked sequence
                heapq.heappush(heap, (-(run[pos] + cols_i[pos, 1]), 1, i, jj))
            continue
        batch = [(i, j)]
        while len(batch) < chunk and heap and heap[0][1] == 1 and -heap[0][0] >= best - margin:
            _, _, i2, j2 = heapq.heappop(heap)
            batch.append((i2, j2))
        lps = yield ("score", source, [insert_markers(template, a, b, opens, closes) for a, b in batch])
        res.scored += len(batch)
        res.sequences += len(batch)
        for (a, b), lp in zip(batch, lps):
            s = float(lp.sum())
            if s > best:
                best, res.placement, res.score = s, (a, b), s
    return res


def run_searches(backend: MTBackend, searches: list[Generator]) -> list:
    """Drive generators in lockstep: each round, all pending requests of one kind go
    to the model as one batched call. Returns each generator's return value."""
    results: list = [None] * len(searches)
    pending: dict[int, object] = {}
    for k, g in enumerate(searches):
        try:
            pending[k] = next(g)
        except StopIteration as stop:
            results[k] = stop.value
    while pending:
        answers: dict[int, object] = {}
        along = [(k, r) for k, r in pending.items() if r[0] == "along"]
        if along:
            cols = along[0][1][3]
            outs = backend.along([r[1] for _, r in along], [r[2] for _, r in along], cols)
            answers.update({k: o for (k, _), o in zip(along, outs)})
        scores = [(k, r) for k, r in pending.items() if r[0] == "score"]
        if scores:
            flat_src = [r[1] for _, r in scores for _ in r[2]]
            flat_tgt = [t for _, r in scores for t in r[2]]
            outs = backend.score(flat_src, flat_tgt)
            pos = 0
            for k, r in scores:
                answers[k] = outs[pos:pos + len(r[2])]
                pos += len(r[2])
        pending = {}
        for k, answer in answers.items():
            try:
                pending[k] = searches[k].send(answer)
            except StopIteration as stop:
                results[k] = stop.value
    return results


# --- the projector ---------------------------------------------------------------------
class Projector:
    """Projects a batch of sentences with one method (see the module docstring).

    ``forward`` translates source-language -> target-language; translate-test also
    needs ``reverse`` (target -> source) and a ``predictor`` for the source language.
    """

    def __init__(self, opts: ProjectionOptions, forward: MTBackend, reverse: MTBackend | None = None,
                 predictor: Predictor | None = None):
        self.opts, self.fw, self.rev, self.predictor = opts, forward, reverse, predictor
        if opts.mode == "translate-test" and (reverse is None or predictor is None):
            raise ValueError("translate-test needs a reverse translation model and a predictor")
        self.opens = forward.target_pieces(opts.open_marker)
        self.closes = forward.target_pieces(opts.close_marker)

    # translate-train: labelled source sentences -> target-language sentences
    def project(self, texts: Sequence[str], spans: Sequence[Sequence[dict]]) -> list[Projected]:
        if self.opts.mode == "translate-train":
            return self.project_onto(texts, spans, None)
        return self.translate_test(texts)

    def translate_test(self, targets: Sequence[str]) -> list[Projected]:
        """Target-language texts -> labels: translate to the source language, predict
        there, project the predictions back onto the original texts."""
        sources = self.rev.translate([self.rev.source_tokens(t) for t in targets], beam_size=self.opts.beam_size)
        src_texts = [self.rev.decode(t.tokens) for t in sources]
        predicted = self.predictor(src_texts)
        results = self.project_onto(src_texts, predicted, list(targets))
        for r, src_text, spans in zip(results, src_texts, predicted):
            r.sequences += 1
            r.src_text, r.src_spans = src_text, [_public(x) for x in spans]
        return results

    def project_onto(self, texts: Sequence[str], spans: Sequence[Sequence[dict]],
                     fixed: Sequence[str] | None) -> list[Projected]:
        """Project ``spans`` of ``texts`` into their translation, or onto the given
        ``fixed`` target texts (translate-test)."""
        method = self.opts.method
        if method == "marker":
            return self._marker(texts, spans, fixed)
        templates, trans_scores = self._templates(texts, fixed, attention=method == "alignment")
        if method == "alignment":
            return self._alignment(texts, spans, templates, trans_scores, fixed)
        return self._constrained(texts, spans, templates, trans_scores, fixed)

    def _templates(self, texts, fixed, attention=False):
        """Target pieces (and attention) per sentence: the translation, or the fixed text."""
        fw = self.fw
        sources = [fw.source_tokens(t) for t in texts]
        if fixed is None:
            out = fw.translate(sources, attention=attention, beam_size=self.opts.beam_size)
            return out, [t.score for t in out]
        pieces = [fw.target_pieces(t) for t in fixed]
        if attention:  # forced decoding of the given target gives its attention
            out = fw.translate(sources, attention=True, prefixes=pieces, beam_size=1)
        else:
            from xlcorpus.transforms.backends.mt import Translation

            out = [Translation(p, float("nan")) for p in pieces]
        return out, [float("nan")] * len(texts)

    def _conclude(self, r: Projected, det: str, offsets, spans_out: list[dict], fixed_text: str | None):
        """The spans one method found for a row: a conflict if two overlap, else the result."""
        if clash := overlapping(spans_out):
            r.reason, r.detail = "conflict", {"spans": [_public(s) for s in clash]}
            return
        spans_out.sort(key=lambda s: s["start"])
        r.span_scores = [s["score"] for s in spans_out]
        self._finish(r, det, offsets, spans_out, fixed_text)

    def _finish(self, result: Projected, det: str, offsets, found: list[dict], fixed_text: str | None):
        """Char spans on the detokenized template -> on the output text."""
        text = det
        if fixed_text is not None:
            moved = to_original(fixed_text, det, offsets)
            if moved is None:
                result.reason, result.detail = "unmappable_text", {"detokenized": det}
                return result
            shift = dict(zip(offsets, moved))
            found = [{**s, "start": shift[s["_a"]][0], "end": shift[s["_b"]][1]} for s in found]
            text = fixed_text
        result.text = text
        result.spans = [{"start": s["start"], "end": s["end"], "label": s["label"]} for s in found]
        return result

    def _constrained(self, texts, spans, templates, trans_scores, fixed) -> list[Projected]:
        o = self.opts
        fw = self.fw
        open_id, close_id = fw.token_id(self.opens[0]), fw.token_id(self.closes[0])
        jobs, searches = [], []
        for row, (text, ents) in enumerate(zip(texts, spans)):
            for e, ent in enumerate(ents):
                src = fw.source_tokens(mark(text, [ent], o.open_marker, o.close_marker))
                jobs.append((row, e))
                searches.append(constrained_search(src, templates[row].tokens, self.opens, self.closes,
                                                   o.boundaries, o.exhaustive, o.score_chunk, o.margin,
                                                   open_id, close_id))
        found = run_searches(fw, searches)
        by_row: dict[int, list] = {}
        for (row, e), res in zip(jobs, found):
            by_row.setdefault(row, []).append((e, res))
        out = []
        for row, text in enumerate(texts):
            tpl = templates[row].tokens
            r = Projected(translation_score=trans_scores[row], sequences=0 if fixed is not None else 1)
            det, offsets = detokenize(tpl)
            results = by_row.get(row, [])
            r.sequences += sum(x.sequences for _, x in results)
            r.scored = sum(x.scored for _, x in results)
            spans_out = []
            for e, res in results:
                ent = spans[row][e]
                if res.placement is None:
                    r.reason, r.detail = "no_span", {"entity": ent}
                    break
                i, j = res.placement
                spans_out.append({"start": offsets[i][0], "end": offsets[j - 1][1], "label": ent["label"],
                                  "_a": offsets[i], "_b": offsets[j - 1], "score": res.score})
            if r.reason is None:
                self._conclude(r, det, offsets, spans_out, fixed[row] if fixed is not None else None)
            out.append(r)
        return out

    def _alignment(self, texts, spans, templates, trans_scores, fixed) -> list[Projected]:
        fw = self.fw
        out = []
        for row, (text, ents) in enumerate(zip(texts, spans)):
            tr = templates[row]
            r = Projected(translation_score=trans_scores[row], sequences=1)
            det, offsets = detokenize(tr.tokens)
            src_pieces = fw.source_pieces(text)
            n_pre = 1 if fw.src_token else 0
            att = tr.attention[:, n_pre:n_pre + len(src_pieces)] if tr.attention is not None else None
            if att is None or att.size == 0 or not tr.tokens:
                r.reason = "no_span"
                out.append(r)
                continue
            src_word = word_ids(src_pieces)
            _, src_offsets = detokenize(src_pieces)
            src_text_det = detokenize(src_pieces)[0]
            src_moved = to_original(text, src_text_det, src_offsets) or src_offsets
            aligned = att.argmax(axis=1)  # each target piece -> its most attended source piece
            tgt_unit = word_ids(tr.tokens) if self.opts.boundaries == "word" else list(range(len(tr.tokens)))
            units: dict[int, list[int]] = {}
            for k, u in enumerate(tgt_unit):
                units.setdefault(u, []).append(k)
            spans_out = []
            for ent in ents:
                words = {src_word[k] for k, (a, b) in enumerate(src_moved) if a < ent["end"] and b > ent["start"]}
                hits = [k for k in range(len(tr.tokens)) if src_word[aligned[k]] in words]
                if not hits:
                    r.reason, r.detail = "no_span", {"entity": ent}
                    break
                first, last = min(tgt_unit[k] for k in hits), max(tgt_unit[k] for k in hits)
                a, b = units[first][0], units[last][-1]
                inside = sum(1 for k in range(a, b + 1) if k in set(hits)) / (b - a + 1)
                spans_out.append({"start": offsets[a][0], "end": offsets[b][1], "label": ent["label"],
                                  "_a": offsets[a], "_b": offsets[b], "score": inside})
            if r.reason is None:
                self._conclude(r, det, offsets, spans_out, fixed[row] if fixed is not None else None)
            out.append(r)
        return out

    def _marker(self, texts, spans, fixed) -> list[Projected]:
        from rapidfuzz import fuzz

        o, fw = self.opts, self.fw
        marked = [mark(t, s, o.open_marker, o.close_marker) for t, s in zip(texts, spans)]
        translations = fw.translate([fw.source_tokens(m) for m in marked], beam_size=o.beam_size)
        out = []
        for row, (text, ents, tr) in enumerate(zip(texts, spans, translations)):
            r = Projected(translation_score=tr.score, sequences=1)
            det = fw.decode(tr.tokens)
            parsed = parse_markers(det, o.open_marker, o.close_marker)
            if isinstance(parsed, str):
                r.reason, r.detail = parsed, {"translation": det}
                out.append(r)
                continue
            clean, found = parsed
            if len(found) != len(ents):
                r.reason, r.detail = "count_mismatch", {"entities": len(ents), "markers": len(found),
                                                        "translation": det}
                out.append(r)
                continue
            names = [text[e["start"]:e["end"]] for e in ents]
            pieces = [clean[a:b] for a, b in found]
            match = match_entities(names, pieces, fuzz.ratio)
            spans_out = []
            for k, (a, b) in enumerate(found):
                e, sim = match[k]
                if sim < o.fuzzy_threshold:
                    r.reason, r.detail = "no_match", {"marked": pieces[k], "similarity": sim}
                    break
                spans_out.append({"start": a, "end": b, "label": ents[e]["label"], "score": sim / 100.0,
                                  "_needle": pieces[k]})
            if r.reason is None and fixed is not None:
                r = self._locate(r, fixed[row], spans_out)
            elif r.reason is None:
                r.text, r.spans = clean, [_public(s) for s in spans_out]
                r.span_scores = [s["score"] for s in spans_out]
            out.append(r)
        return out

    def _locate(self, r: Projected, target: str, found: list[dict]) -> Projected:
        """translate-test marker: find each bracketed string in the original text."""
        from rapidfuzz import fuzz

        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", target)]
        spans_out = []
        for s in found:
            best, where = -1.0, None
            needle = s["_needle"]
            for a in range(len(words)):
                for b in range(a, min(len(words), a + len(needle.split()) + 2)):
                    cand = target[words[a][0]:words[b][1]]
                    sim = 100.0 if cand == needle else fuzz.ratio(cand, needle)
                    if sim > best:
                        best, where = sim, (words[a][0], words[b][1])
            if where is None or best < self.opts.fuzzy_threshold:
                r.reason, r.detail = "no_span", {"marked": needle}
                return r
            spans_out.append({"start": where[0], "end": where[1], "label": s["label"], "score": best / 100})
        if clash := overlapping(spans_out):
            r.reason, r.detail = "conflict", {"spans": [_public(x) for x in clash]}
            return r
        spans_out.sort(key=lambda x: x["start"])
        r.text, r.spans, r.span_scores = target, [_public(x) for x in spans_out], [x["score"] for x in spans_out]
        return r


def _public(span: dict) -> dict:
    return {"start": span["start"], "end": span["end"], "label": span["label"]}


def match_entities(names: Sequence[str], pieces: Sequence[str], ratio) -> list[tuple[int, float]]:
    """For each bracketed target string: (entity index, similarity 0-100). Exact
    (case-insensitive) matches first, then the most similar pairs greedily; ties
    keep the source order."""
    n = len(names)
    match: dict[int, tuple[int, float]] = {}
    free = set(range(n))
    for k, p in enumerate(pieces):
        for e in sorted(free):
            if names[e].casefold() == p.casefold():
                match[k] = (e, 100.0)
                free.discard(e)
                break
    pairs = sorted(((ratio(names[e].casefold(), pieces[k].casefold()), -abs(e - k), k, e)
                    for k in range(len(pieces)) if k not in match for e in free), reverse=True)
    for sim, _order, k, e in pairs:
        if k not in match and e in free:
            match[k] = (e, float(sim))
            free.discard(e)
    return [match[k] for k in range(len(pieces))]


# --- Arrow --------------------------------------------------------------------------------
def project_batch(batch: pa.RecordBatch, projector: Projector, names: Sequence[str]
                  ) -> tuple[pa.RecordBatch, pa.RecordBatch | None]:
    """NER_SCHEMA rows -> (PROJECTION_SCHEMA rows, REJECTED rows)."""
    o = projector.opts
    texts = batch.column("text").to_pylist()
    spans = batch.column("spans").to_pylist() if "spans" in batch.schema.names else [[]] * len(texts)
    spans = [s or [] for s in spans]
    known = {n[2:] for n in names if n[:2] in ("B-", "I-")}
    verdicts: list[tuple[str, dict] | None] = [None] * len(texts)
    todo = []
    for k, ents in enumerate(spans):
        unknown = sorted({s["label"] for s in ents} - known)
        if unknown and o.mode == "translate-train":
            verdicts[k] = ("unknown_label", {"labels": unknown, "names": list(names)})
        else:
            todo.append(k)
    results = projector.project([texts[k] for k in todo], [spans[k] for k in todo]) if todo else []
    rows = []
    keep = np.zeros(len(texts), bool)
    for k, res in zip(todo, results):
        if res.reason is not None:
            verdicts[k] = (res.reason, {**(res.detail or {}), "method": o.method})
            continue
        try:
            tokens, tags = tokens_and_tags(res.text, res.spans, names)
        except KeyError as e:
            verdicts[k] = ("unknown_label", {"error": str(e)})
            continue
        keep[k] = True
        src_spans = spans[k] if o.mode == "translate-train" else res.src_spans
        rows.append({
            "id": batch.column("id")[k].as_py(), "text": res.text, "source": batch.column("source")[k].as_py(),
            "line": batch.column("line")[k].as_py(), "offset": batch.column("offset")[k].as_py(),
            "tokens": tokens, "ner_tags": tags, "spans": res.spans, "method": o.method, "mode": o.mode,
            "src_text": texts[k] if o.mode == "translate-train" else res.src_text,
            "src_spans": src_spans, "span_scores": res.span_scores,
            "translation_score": None if res.translation_score is None or np.isnan(res.translation_score)
            else res.translation_score,
            "model_calls": res.sequences, "scored_candidates": res.scored})
    kept = pa.RecordBatch.from_pylist(rows, schema=PROJECTION_SCHEMA)
    bad = [k for k, v in enumerate(verdicts) if v is not None]
    rejected = rejected_rows(batch, bad, [verdicts[k][0] for k in bad], [verdicts[k][1] for k in bad], STAGE) \
        if bad else None
    return kept, rejected


def load_predictor(spec: str) -> Predictor:
    """``module:function`` -> the callable (translate-test's source-language tagger)."""
    module, sep, name = spec.partition(":")
    if not sep:
        raise ValueError(f"predictor {spec!r}: expected module:function")
    return getattr(importlib.import_module(module), name)


_SHARED = shared.Shared()


class _Holder:
    def __init__(self, value):
        self.value = value


class _ProjectFn(BatchStageFn):
    stage = STAGE
    dead_reason = "projection_error"
    fatal = (FileNotFoundError,)

    def __init__(self, opts: ProjectionOptions, mt: MTOptions, reverse: MTOptions | None, predictor: str | None):
        super().__init__()
        self.opts, self.mt, self.reverse, self.predictor = opts, mt, reverse, predictor

    def setup(self):
        def load():
            fw = MTBackend(self.mt)
            rev = None
            if self.opts.mode == "translate-test":
                rev = MTBackend(self.reverse) if self.reverse else fw.reversed()
            return _Holder((fw, rev))

        fw, rev = _SHARED.acquire(load, tag=repr((self.mt, self.reverse, self.opts.mode))).value
        pred = load_predictor(self.predictor) if self.predictor else None
        self.projector = Projector(self.opts, fw, rev, pred)
        self.names = self.opts.iob2_names()

    def step(self, batch: pa.RecordBatch):
        return project_batch(batch, self.projector, self.names)


class ProjectLabels(beam.PTransform):
    """PCollection[NER RecordBatch] -> outputs kept (PROJECTION_SCHEMA) / rejected / dead_letter."""

    def __init__(self, opts: ProjectionOptions, mt: MTOptions, reverse: MTOptions | None = None,
                 predictor: str | None = None):
        super().__init__()
        if opts.mode == "translate-test" and not predictor:
            raise ValueError("translate-test needs a predictor (module:function)")
        if predictor:
            load_predictor(predictor)  # fail at construction, not on the workers
        self.opts, self.mt, self.reverse, self.predictor = opts, mt, reverse, predictor

    def expand(self, batches):
        return batches | "ProjectLabels" >> beam.ParDo(
            _ProjectFn(self.opts, self.mt, self.reverse, self.predictor)).with_outputs(REJECTED, DEAD_LETTER,
                                                                                       main=KEPT)
