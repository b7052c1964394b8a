"""Alignment projection: the translation's cross-attention aligns each target piece
to its most attended source piece; an entity's target span is the hull of the
target words (or pieces) aligned into it, scored by the share of aligned pieces."""

from __future__ import annotations

from xlcorpus.transforms.stages.project.markers import detokenize, to_original, word_ids
from xlcorpus.transforms.stages.project.results import Projected, conclude


def project_alignment(projector, texts, spans, templates, trans_scores, fixed) -> list[Projected]:
    fw = projector.fw
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
        tgt_unit = word_ids(tr.tokens) if projector.opts.boundaries == "word" else list(range(len(tr.tokens)))
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
            conclude(r, det, offsets, spans_out, fixed[row] if fixed is not None else None)
        out.append(r)
    return out
