"""Constrained projection (Codec-style): the best marker placement for one entity
inside the translation template, by best-first branch-and-bound over exact
log-probs (``constrained_search``), searches of a batch driven in lockstep so each
round is one batched model call (``run_searches``), and the method over a batch
(``project_constrained``). See the package docstring for the bound."""

from __future__ import annotations

import heapq
from collections.abc import Generator, Sequence
from dataclasses import dataclass

import numpy as np

from xlcorpus.transforms.backends.mt import MTBackend
from xlcorpus.transforms.stages.project.markers import boundaries, detokenize, mark
from xlcorpus.transforms.stages.project.results import Projected, conclude

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


def project_constrained(projector, texts, spans, templates, trans_scores, fixed) -> list[Projected]:
    """Constrained projection of a batch: one search per entity, all run in lockstep."""
    o, fw = projector.opts, projector.fw
    opens, closes = projector.opens, projector.closes
    open_id, close_id = fw.token_id(opens[0]), fw.token_id(closes[0])
    jobs, searches = [], []
    for row, (text, ents) in enumerate(zip(texts, spans)):
        for e, ent in enumerate(ents):
            src = fw.source_tokens(mark(text, [ent], o.open_marker, o.close_marker))
            jobs.append((row, e))
            searches.append(constrained_search(src, templates[row].tokens, opens, closes, o.boundaries,
                                               o.exhaustive, o.score_chunk, o.margin, open_id, close_id))
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
            conclude(r, det, offsets, spans_out, fixed[row] if fixed is not None else None)
        out.append(r)
    return out
