"""Alignment projection: the translation's cross-attention aligns each target piece
to its most attended source piece; an entity's target span is the hull of the
target words (or pieces) aligned into it, scored by the share of aligned pieces.
The pieces aligned into each entity (``aligned_pieces``) also give the constrained
search its first guess."""

from __future__ import annotations

from xlcorpus.transforms.stages.project.markers import detokenize, to_original, word_ids
from xlcorpus.transforms.stages.project.results import Projected, conclude


def aligned_pieces(fw, text: str, ents, translation) -> list[set[int]] | None:
    """Per entity: the target pieces whose most attended source piece lies in one of its
    words; None when the translation has no attention."""
    tokens = translation.tokens
    src_pieces = fw.source_pieces(text)
    n_pre = 1 if fw.src_token else 0
    att = translation.attention[:, n_pre:n_pre + len(src_pieces)] if translation.attention is not None else None
    if att is None or att.size == 0 or not tokens:
        return None
    src_word = word_ids(src_pieces)
    src_text_det, src_offsets = detokenize(src_pieces)
    src_moved = to_original(text, src_text_det, src_offsets) or src_offsets
    aligned_word = [src_word[k] for k in att.argmax(axis=1).tolist()]  # each target piece -> a source word
    out = []
    for ent in ents:
        words = {src_word[k] for k, (a, b) in enumerate(src_moved) if a < ent["end"] and b > ent["start"]}
        out.append({k for k, w in enumerate(aligned_word) if w in words})
    return out


def aligned_hulls(fw, text: str, ents, translation, kind: str = "word") -> list[tuple[int, int, float] | None] | None:
    """Per entity: (first piece, last piece, share of aligned pieces inside) of the
    target hull aligned into it, or None when nothing aligns to it; None for all when
    the translation has no attention."""
    per_entity = aligned_pieces(fw, text, ents, translation)
    if per_entity is None:
        return None
    tokens = translation.tokens
    tgt_unit = word_ids(tokens) if kind == "word" else list(range(len(tokens)))
    units: dict[int, list[int]] = {}
    for k, u in enumerate(tgt_unit):
        units.setdefault(u, []).append(k)
    out: list[tuple[int, int, float] | None] = []
    for hits in per_entity:
        if not hits:
            out.append(None)
            continue
        first, last = min(tgt_unit[k] for k in hits), max(tgt_unit[k] for k in hits)
        a, b = units[first][0], units[last][-1]
        out.append((a, b, sum(1 for k in range(a, b + 1) if k in hits) / (b - a + 1)))
    return out


def project_alignment(projector, texts, spans, templates, trans_scores, fixed) -> list[Projected]:
    fw = projector.fw
    out = []
    for row, (text, ents) in enumerate(zip(texts, spans)):
        tr = templates[row]
        r = Projected(translation_score=trans_scores[row], sequences=1)
        hulls = aligned_hulls(fw, text, ents, tr, projector.opts.boundaries)
        if hulls is None:
            r.reason = "no_span"
            out.append(r)
            continue
        det, offsets = detokenize(tr.tokens)
        spans_out = []
        for ent, hull in zip(ents, hulls):
            if hull is None:
                r.reason, r.detail = "no_span", {"entity": ent}
                break
            a, b, inside = hull
            spans_out.append({"start": offsets[a][0], "end": offsets[b][1], "label": ent["label"],
                              "_a": offsets[a], "_b": offsets[b], "score": inside})
        if r.reason is None:
            conclude(r, det, offsets, spans_out, fixed[row] if fixed is not None else None)
        out.append(r)
    return out
