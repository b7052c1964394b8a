"""NER for a token-classification model: word-level labels -> subword windows.

Windows break at word boundaries, so a word's pieces stay together unless one word
alone is longer than a window; each word is labelled in exactly one window (see
``align_ner``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from xlcorpus.transforms.stages.finetune.common import IGNORE_INDEX


def _windows(word_starts: list[int], total: int, cap: int, stride: int) -> list[tuple[int, int]]:
    """Piece ranges ``[start, end)`` of at most ``cap`` pieces covering ``[0, total)``.

    A window ends at the last word start it can reach, so words stay whole; the next
    window starts at the first word start at most ``stride`` pieces before that end
    (less overlap when words do not line up, none when a long word leaves no room).
    Only a word longer than ``cap`` is cut inside.
    """
    out: list[tuple[int, int]] = []
    ps, prev_pe = 0, 0
    while True:
        if total - ps <= cap:
            out.append((ps, total))
            return out
        limit = ps + cap
        pe = word_starts[bisect_right(word_starts, limit) - 1]
        if pe <= max(ps, prev_pe):  # no new word boundary within reach
            if ps < prev_pe:  # give up the overlap and try again from the last end
                ps = prev_pe
                continue
            pe = limit  # one word longer than a window: cut inside it
        out.append((ps, pe))
        prev_pe = pe
        k = bisect_left(word_starts, max(pe - stride, ps + 1))
        ps = min(word_starts[k], pe) if k < len(word_starts) else pe


def align_ner(words: Sequence[Sequence[str]], word_labels: Sequence[Sequence[int]], sp, max_length: int,
              stride: int, cls_id: int, sep_id: int, pad_id: int | None = None,
              piece_counts: list[tuple[int, int]] | None = None) -> dict[str, list]:
    """Word-level NER labels -> token windows for a token-classification model.

    Returns columns ``example``, ``window``, ``input_ids``, ``attention_mask``,
    ``labels`` and ``word_ids``, one row per window. ``piece_counts``, if given, gets
    each example's (pieces, unknown pieces) appended, for the fertility report. Each window is
    ``[cls] pieces [sep]`` (padded to ``max_length`` with ``pad_id`` if given).

    Labels: the first piece of a word carries the word's label, every other piece,
    the specials and the padding carry -100. A word that encodes to no pieces gets
    one unk piece so it still has a label.

    Windows: an example longer than ``max_length - 2`` pieces becomes several windows
    (nothing is truncated) that overlap by up to ``stride`` pieces and break at word
    boundaries (``_windows``). Where two windows overlap, the overlap is split at its
    middle piece: words starting before it are labelled in the earlier window, the
    rest in the later one, and elsewhere they are context with -100. So every word
    is labelled exactly once over its example's windows, with context on both sides.
    ``word_ids`` gives each token's word index in its example (-1 for specials/pad).
    """
    cap = max_length - 2
    if cap < 1:
        raise ValueError(f"max_length={max_length} leaves no room beside [cls] and [sep]")
    if not 0 <= stride < cap:
        raise ValueError(f"stride must be in [0, max_length - 2), got {stride} with max_length={max_length}")
    if len(words) != len(word_labels):
        raise ValueError(f"{len(words)} examples of words but {len(word_labels)} of labels")
    flat: list[str] = []
    for i, (ws, ls) in enumerate(zip(words, word_labels)):
        if len(ws) != len(ls):
            raise ValueError(f"example {i}: {len(ws)} words but {len(ls)} labels")
        flat.extend(ws)
    pieces = sp.encode(flat) if flat else []
    unk = sp.unk_id()
    cols: dict[str, list] = {k: [] for k in ("example", "window", "input_ids", "attention_mask", "labels", "word_ids")}
    at = 0
    for ex, (ws, ls) in enumerate(zip(words, word_labels)):
        ids: list[int] = []
        labels: list[int] = []
        wids: list[int] = []
        starts: list[int] = []
        for w, (p, lab) in enumerate(zip(pieces[at:at + len(ws)], ls)):
            if not p:
                p = [unk]
            starts.append(len(ids))
            ids.extend(p)
            labels.append(lab)
            labels.extend([IGNORE_INDEX] * (len(p) - 1))
            wids.extend([w] * len(p))
        at += len(ws)
        if piece_counts is not None:
            piece_counts.append((len(ids), ids.count(unk)))
        spans = _windows(starts, len(ids), cap, stride) if ids else [(0, 0)]
        bounds = [0] + [(spans[k + 1][0] + spans[k][1] + 1) // 2 for k in range(len(spans) - 1)] + [len(ids)]
        for k, (ps, pe) in enumerate(spans):
            lo, hi = bounds[k], bounds[k + 1]
            lab = ([IGNORE_INDEX] * (lo - ps) + labels[lo:hi] + [IGNORE_INDEX] * (pe - hi)) if (lo, hi) != (ps, pe) \
                else labels[ps:pe]
            n = pe - ps + 2
            pad = (max_length - n) if pad_id is not None else 0
            cols["example"].append(ex)
            cols["window"].append(k)
            cols["input_ids"].append([cls_id] + ids[ps:pe] + [sep_id] + [pad_id] * pad)
            cols["attention_mask"].append([1] * n + [0] * pad)
            cols["labels"].append([IGNORE_INDEX] + lab + [IGNORE_INDEX] * (1 + pad))
            cols["word_ids"].append([-1] + wids[ps:pe] + [-1] * (1 + pad))
    return cols
