"""Marker projection (EasyProject): translate the sentence with every entity marked
``[ ... ]``, parse the brackets and match them to the entities (exact text, then
fuzzy with rapidfuzz); a different number of bracket pairs than entities is a
rejection. In translate-test the bracketed strings are found in the original text."""

from __future__ import annotations

import re
from collections.abc import Sequence

from xlcorpus.transforms.stages.project.markers import mark, overlapping, parse_markers
from xlcorpus.transforms.stages.project.results import Projected, public


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


def project_marker(projector, texts, spans, fixed) -> list[Projected]:
    from rapidfuzz import fuzz

    o, fw = projector.opts, projector.fw
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
            r = locate(r, fixed[row], spans_out, o.fuzzy_threshold)
        elif r.reason is None:
            r.text, r.spans = clean, [public(s) for s in spans_out]
            r.span_scores = [s["score"] for s in spans_out]
        out.append(r)
    return out


def locate(r: Projected, target: str, found: list[dict], fuzzy_threshold: float) -> Projected:
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
        if where is None or best < fuzzy_threshold:
            r.reason, r.detail = "no_span", {"marked": needle}
            return r
        spans_out.append({"start": where[0], "end": where[1], "label": s["label"], "score": best / 100})
    if clash := overlapping(spans_out):
        r.reason, r.detail = "conflict", {"spans": [public(x) for x in clash]}
        return r
    spans_out.sort(key=lambda x: x["start"])
    r.text, r.spans, r.span_scores = target, [public(x) for x in spans_out], [x["score"] for x in spans_out]
    return r
