"""Constrained projection (Codec-style): the best marker placement for one entity
inside the translation template, by best-first branch-and-bound over exact
log-probs where every model request is one ``score_batch`` of whole marked
templates (``constrained_search``); the searches of a batch driven in lockstep so
each round is one batched, length-grouped model call for all entities of all
sentences (``run_searches``); and the method over a batch (``project_constrained``).

The bound. A placement (i, j) is the sequence T[:i] O T[i:j] C T[j:] (template T,
open marker pieces O, close pieces C); all have the same length and the answer is
the one with the highest sum of log-probs. Scoring one placement R gives, at each
position k, the exact log-prob of R's first k tokens and lp_k = log p(R[k] | R[:k]).
Every other placement that agrees with R before k and differs at k has a score of
at most  sum(R's first k log-probs) + log(1 - p(R[k] | R[:k]))  (the token it has
at k shares the probability mass R[k] did not take; every later term is <= 0). The
placements of a search node split, along R, into groups that branch off at one
position each ("open at an earlier word", "open later", "close earlier", "close
later"), so each scored placement bounds all its siblings at once. The first
placement scored is the cross-attention guess (``guess_from_attention``); when the model
agrees with it, that one sequence per entity proves it optimal. A group is
expanded (its own guess scored) only while its bound can still beat the best
exact score; the answer equals exhaustive scoring (tested).
"""

from __future__ import annotations

import heapq
import math
from itertools import accumulate
from collections.abc import Generator, Sequence
from dataclasses import dataclass

from xlcorpus.transforms.backends.mt import MTBackend
from xlcorpus.transforms.stages.project.alignment import aligned_pieces
from xlcorpus.transforms.stages.project.markers import boundaries, detokenize, mark, word_ids
from xlcorpus.transforms.stages.project.results import Projected, conclude

# (source, [("score", target) | ("along", (target prefix, [(position, token id), ...])), ...]):
# one round's asks of one search
Request = tuple

# float32 log-probs carry ~1e-6 of rounding: the complement bound is taken from a
# log-prob lowered by this much, so it stays an upper bound (log(1e-4) at most when p ~ 1).
LOGPROB_NOISE = 1e-4
CPU_BATCH_TOKENS = 512  # CPU scoring batches: small ones ran faster than 2k-16k (bench/projection.py)
# float16 / bfloat16 compute (a GPU's usual choice) rounds a log-prob near 10 by ~0.01
HALF_PRECISION_NOISE, HALF_PRECISION_MARGIN = 2e-2, 5e-2


def tolerances(compute_type: str, margin: float) -> tuple[float, float]:
    """(per-log-prob noise, margin on summed scores) for the compute type the model runs in."""
    if "float16" in compute_type:  # float16, bfloat16, int8_float16, int8_bfloat16
        return HALF_PRECISION_NOISE, max(margin, HALF_PRECISION_MARGIN)
    return LOGPROB_NOISE, margin


@dataclass
class SearchResult:
    placement: tuple[int, int] | None  # (open, close) template positions
    score: float = float("-inf")  # exact log-prob of the best marked template
    scored: int = 0  # placements scored exactly
    sequences: int = 0  # sequences sent through the model


def insert_markers(template: Sequence[str], i: int, j: int, opens: Sequence[str], closes: Sequence[str]
                   ) -> list[str]:
    return list(template[:i]) + list(opens) + list(template[i:j]) + list(closes) + list(template[j:])


def placements(template: Sequence[str], kind: str) -> list[tuple[int, int]]:
    b = boundaries(template, kind)
    return [(i, j) for i in b[:-1] for j in b if j > i]


def guess_placement(bounds: Sequence[int], first: int, last: int) -> tuple[int, int]:
    """Template pieces first..last (a hull) -> the enclosing placement, as indices into
    ``bounds``: the last boundary at or before ``first``, the first one after ``last``."""
    p = max(k for k, x in enumerate(bounds[:-1]) if x <= first) if first >= bounds[0] else 0
    q = next((k for k, x in enumerate(bounds) if x > last), len(bounds) - 1)
    return p, max(q, p + 1)


def guess_from_attention(hits: set[int], tokens: Sequence[str], kind: str = "word") -> tuple[int, int] | None:
    """First and last template piece of the likeliest span of an entity, from the pieces
    aligned into it (``aligned_pieces``): the run of consecutive units (words, or pieces)
    holding the most of them. The first piece's alignment counts only when it is the
    only one: the first decoding step attends before any target context, and on the
    reference model it often lands on a name elsewhere (a hull that starts at the first
    word: 56 wrong guesses in 2,381 entities, 11 without it)."""
    if not hits:
        return None
    if len(hits) > 1:
        hits = hits - {0}
    unit = word_ids(tokens) if kind == "word" else list(range(len(tokens)))
    weight: dict[int, int] = {}
    for k in hits:
        weight[unit[k]] = weight.get(unit[k], 0) + 1
    runs: list[list[int]] = []  # [weight, first unit, last unit]
    for u in sorted(weight):
        if runs and runs[-1][2] == u - 1:
            runs[-1][0] += weight[u]
            runs[-1][2] = u
        else:
            runs.append([weight[u], u, u])
    _w, first, last = max(runs, key=lambda r: r[0])  # the first of equally heavy runs
    return unit.index(first), len(unit) - 1 - unit[::-1].index(last)


def constrained_search(source: list[str], template: list[str], opens: list[str], closes: list[str],
                       kind: str = "word", exhaustive: bool = False, chunk: int = 1, margin: float = 1e-3,
                       guess: tuple[int, int] | None = None, ids: dict | None = None,
                       noise: float = LOGPROB_NOISE) -> Generator[Request, object, SearchResult]:
    """Best marker placement for one entity (a generator: yields model requests, is
    sent their answers, returns a SearchResult).

    ``guess``: the first and last template piece of a likely span, whose placement is
    scored first (any value keeps the answer exact; a good one makes the search short).
    ``ids``: vocabulary ids ``open``, ``close`` and ``template`` (one per template
    piece). Every node is expanded by scoring its representative placement, which
    bounds its branches by complement; with ``ids``, the branches that bound cannot
    prune are bounded again exactly by one ``along`` request over the representative's
    prefix up to the last of them (the model's next-token log-probs there). ``noise``:
    how far a log-prob may be off by rounding (see ``tolerances``)."""
    b = boundaries(template, kind)
    res = SearchResult(None)
    if len(b) < 2:
        return res
    if exhaustive:
        cands = placements(template, kind)
        lps = yield (source, [("score", insert_markers(template, i, j, opens, closes)) for i, j in cands])
        scores = [float(lp.sum()) for lp in lps]
        best = max(range(len(scores)), key=scores.__getitem__)
        res.placement, res.score = cands[best], scores[best]
        res.scored = res.sequences = len(cands)
        return res

    last = len(b) - 1  # index of the end boundary; opening indices are 0..last-1
    n_open, o0, c0 = len(opens), opens[0], closes[0]
    gp, gq = (0, 1) if guess is None else guess_placement(b, *guess)
    width = gq - gp
    if ids is not None:
        open_id, close_id, tids = ids["open"], ids["close"], ids["template"]

    def representative(node) -> tuple[int, int]:
        kind_, p, q0 = node
        if kind_ == "open":  # every opening index >= p: the guess if still inside, else the nearest
            p = max(p, gp)
            q0 = p + 1
        q = gq if p == gp else p + width
        return p, min(max(q, q0), last)

    def branches(node, p: int, q: int) -> list[tuple[int, str, int, tuple]]:
        """The rest of ``node`` split along its representative (p, q): (position in the
        marked sequence, the token the branch has there, its id, the branch node)."""
        out = []
        if node[0] == "open":
            for p2 in range(node[1], p):  # opening earlier, at b[p2], where the representative has T[b[p2]]
                out.append((b[p2], o0, open_id if ids else 0, ("close", p2, p2 + 1)))
            if p + 1 < last:  # opening later: T[b[p]] where the representative opens
                out.append((b[p], template[b[p]], tids[b[p]] if ids else 0, ("open", p + 1, p + 2)))
            q0 = p + 1
        else:
            q0 = node[2]
        for q2 in range(q0, q):  # closing earlier, at b[q2]
            out.append((b[q2] + n_open, c0, close_id if ids else 0, ("leaf", p, q2)))
        if q < last:  # closing later: T[b[q]] where the representative closes
            out.append((b[q] + n_open, template[b[q]], tids[b[q]] if ids else 0, ("close", p, q + 1)))
        return out

    # node: ("open", p0, _) = placements opening at index >= p0; ("close", p, q0) = opening
    # at p, closing at index >= q0; ("leaf", p, q) = that one placement.
    heap: list[tuple[float, int, tuple]] = [(-0.0, 0, ("open", 0, 1))]
    pushed = 1
    best = float("-inf")
    while heap and -heap[0][0] >= best - margin:
        batch = []
        while heap and len(batch) < chunk and -heap[0][0] >= best - margin:
            node = heapq.heappop(heap)[2]
            pq = node[1:] if node[0] == "leaf" else representative(node)
            batch.append((node, pq, insert_markers(template, b[pq[0]], b[pq[1]], opens, closes)))
        got = yield (source, [("score", seq) for _, _, seq in batch])
        res.scored += len(batch)
        res.sequences += len(batch)
        open_branches = []  # (node's prefix sums, its sequence, [(bound, position, token id, branch)])
        for (node, (p, q), seq), lp in zip(batch, got):
            lp = lp.tolist()
            s = math.fsum(lp)
            if s > best:
                best, res.placement, res.score = s, (b[p], b[q]), s
            if node[0] == "leaf":
                continue
            prefix = [0.0, *accumulate(lp)]
            bounded = []
            for k, token, token_id, child in branches(node, p, q):
                if seq[k] == token:  # not a branch after all (a marker piece inside the template)
                    bound = prefix[k + 1]
                else:  # the branch token has at most the mass the representative's token left
                    bound = prefix[k] + math.log(-math.expm1(lp[k] - noise))
                bounded.append((bound, k, token_id, child))
            open_branches.append((prefix, seq, bounded))
        if ids is not None:  # exact bounds where the complement cannot prune
            asks = []
            for prefix, seq, bounded in open_branches:
                live = [k for bound, k, _, _ in bounded if bound >= best - margin]
                if live:  # the distribution at position k comes after seq[:k]: the prefix up to the last
                    last_k = max(live)
                    asks.append((prefix, bounded, seq[:last_k], [(k, tid) for _, k, tid, _ in bounded if k <= last_k]))
            if asks:
                got = yield (source, [("along", (prefix_seq, queries)) for _, _, prefix_seq, queries in asks])
                res.sequences += len(asks)
                for (prefix, bounded, prefix_seq, _queries), exact in zip(asks, got):
                    exact_lp = iter(exact.tolist())  # in the order of the queries: the branches up to the prefix's end
                    bounded[:] = [(min(bound, prefix[k] + next(exact_lp)) if k <= len(prefix_seq) else bound,
                                   k, token_id, child) for bound, k, token_id, child in bounded]
        for _prefix, _seq, bounded in open_branches:
            for bound, _k, _id, child in bounded:
                if bound >= best - margin:
                    heapq.heappush(heap, (-bound, pushed, child))
                    pushed += 1
    return res


def run_searches(backend: MTBackend, searches: list[Generator], batch_tokens: int | None = None) -> list:
    """Drive generators in lockstep: each round, the pending asks of all searches go
    to the model together, one ``score`` and one ``logprobs_at`` request (``MTBackend``
    groups each by length into batches of ``batch_tokens``, default the backend's
    ``max_batch_tokens``). Returns each generator's return value."""
    results: list = [None] * len(searches)
    pending: dict[int, Request] = {}
    for k, g in enumerate(searches):
        try:
            pending[k] = next(g)
        except StopIteration as stop:
            results[k] = stop.value
    while pending:
        flat = [(k, n, kind, pending[k][0], seq) for k in pending for n, (kind, seq) in enumerate(pending[k][1])]
        answers = {k: [None] * len(pending[k][1]) for k in pending}
        for kind in ("score", "along"):
            part = [x for x in flat if x[2] == kind]
            if not part:
                continue
            sources = [x[3] for x in part]
            if kind == "score":
                outs = backend.score(sources, [x[4] for x in part], max_tokens=batch_tokens)
            else:
                outs = backend.logprobs_at(sources, [x[4][0] for x in part], [x[4][1] for x in part],
                                           max_tokens=batch_tokens)
            for (k, n, *_), out in zip(part, outs):
                answers[k][n] = out
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
    fixed_ids = {"open": fw.token_id(opens[0]), "close": fw.token_id(closes[0])}
    translator = fw.translator  # where and in which compute type it actually runs (default/auto resolved)
    noise, margin = tolerances(translator.compute_type, o.margin)
    batch_tokens = o.batch_tokens or (CPU_BATCH_TOKENS if translator.device == "cpu" else fw.opts.max_batch_tokens)
    jobs, searches = [], []
    for row, (text, ents) in enumerate(zip(texts, spans)):
        tpl = templates[row]
        hits = aligned_pieces(fw, text, ents, tpl) or [set()] * len(ents)
        ids = {**fixed_ids, "template": [fw.token_id(t) for t in tpl.tokens]} if o.bounds == "logits" else None
        for e, (ent, aligned) in enumerate(zip(ents, hits)):
            src = fw.source_tokens(mark(text, [ent], o.open_marker, o.close_marker))
            jobs.append((row, e))
            searches.append(constrained_search(src, tpl.tokens, opens, closes, o.boundaries, o.exhaustive,
                                               o.score_chunk, margin, guess_from_attention(aligned, tpl.tokens,
                                                                                           o.boundaries), ids, noise))
    found = run_searches(fw, searches, batch_tokens)
    by_row: dict[int, list] = {}
    for (row, e), res in zip(jobs, found):
        by_row.setdefault(row, []).append((e, res))
    out = []
    for row, text in enumerate(texts):
        tpl = templates[row].tokens
        r = Projected(translation_score=trans_scores[row], sequences=1)  # the template (or its forced pass)
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
