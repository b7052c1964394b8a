"""What the origin classifier sees of a token: the fastText line, sentence runs, the
training lookup and the context model's features. Shared by prediction (``origin``)
and training (``xlcorpus.pipelines.etymology``); no fastText import, no Beam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import regex

LABEL_PREFIX = "__label__"
_WHITESPACE = regex.compile(r"[\s\x00]+")  # what fastText splits words on
LETTER = regex.compile(r"\p{L}")


def ngram_text(token: str, initial: bool) -> str:
    """The line fastText sees for one token: the lowercased word and capitalisation flags."""
    word = _WHITESPACE.sub("_", token.lower()) or "\u2205"
    if word.startswith(LABEL_PREFIX) or word == "</s>":  # fastText reads these as a label / end of line
        word = "_" + word
    if token[:1].isupper():
        return f"{word} __cap0" if initial else f"{word} __cap"
    return word


def ngram_proba(model, texts: Sequence[str], n_labels: int) -> np.ndarray:
    """Class probabilities (rows: texts, columns: label indices) in one predict call."""
    out = np.zeros((len(texts), n_labels), np.float64)
    if not texts:
        return out
    labels, probs = model.predict(list(texts), k=-1)
    for row, (names, ps) in enumerate(zip(labels, probs)):
        out[row, [int(name[len(LABEL_PREFIX):]) for name in names]] = ps
    return out


# --- sentences -----------------------------------------------------------------------
def sentence_runs(sentence_ids: Sequence | None, n: int) -> np.ndarray:
    """Run index per token: adjacent tokens with equal sentence id share a run.
    None: every token is its own run (a plain word list, no context)."""
    if sentence_ids is None:
        return np.arange(n, dtype=np.int64)
    if len(sentence_ids) != n:
        raise ValueError(f"{len(sentence_ids)} sentence ids for {n} tokens")
    if n == 0:
        return np.zeros(0, np.int64)
    ids = list(sentence_ids)
    change = np.fromiter((ids[i] != ids[i - 1] for i in range(1, n)), bool, n - 1)
    return np.concatenate([[0], np.cumsum(change)]).astype(np.int64)


def run_starts(runs: np.ndarray) -> np.ndarray:
    """True for the first token of each run."""
    return np.concatenate([[True], runs[1:] != runs[:-1]]) if len(runs) else np.zeros(0, bool)


def renumber(runs: np.ndarray) -> np.ndarray:
    """Runs of a subset, made consecutive again (a gap between kept rows starts a new run)."""
    return sentence_runs(runs.tolist(), len(runs))


def onehot(idx: np.ndarray, n_labels: int) -> np.ndarray:
    out = np.zeros((len(idx), n_labels))
    out[np.arange(len(idx)), idx] = 1.0
    return out


# --- the training lookup ------------------------------------------------------------------
@dataclass
class Lookup:
    """Label counts per exact token and per lowercased token."""

    n_labels: int
    exact: dict[str, list[int]] = field(default_factory=dict)
    lowercase: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, tokens: Sequence[str], y: Sequence[int], n_labels: int) -> Lookup:
        lk = cls(n_labels)
        for t, label in zip(tokens, y):
            lk.exact.setdefault(t, [0] * n_labels)[label] += 1
            lk.lowercase.setdefault(t.lower(), [0] * n_labels)[label] += 1
        return lk

    def known(self, tokens: Sequence[str], share: float) -> np.ndarray:
        """Lookup label index per token, -1 where unseen or without a clear majority."""
        out = np.full(len(tokens), -1, np.int64)
        for i, t in enumerate(tokens):
            counts = self.exact.get(t)
            if counts:
                best = max(range(self.n_labels), key=counts.__getitem__)
                if counts[best] > share * sum(counts):
                    out[i] = best
        return out


# --- the context model's features -----------------------------------------------------------
def context_features(tokens: Sequence[str], runs: np.ndarray, proba: np.ndarray, known: np.ndarray,
                     lowercase: Mapping[str, Sequence[float]]) -> np.ndarray:
    """Feature matrix of the context model, one row per token.

    ``proba``: n-gram class probabilities; ``known``: lookup label index or -1;
    ``lowercase``: label counts of training tokens by lowercased form.
    """
    n, n_labels = proba.shape
    # What the neighbours are taken to be: their lookup label if seen, else the n-gram guess.
    belief = proba.copy()
    seen = known >= 0
    belief[seen] = onehot(known[seen], n_labels)
    caps = np.fromiter((t[:1].isupper() for t in tokens), bool, n)
    upper = np.fromiter((len(t) > 1 and t.isupper() for t in tokens), bool, n)
    initial = run_starts(runs)
    final = np.concatenate([runs[:-1] != runs[1:], [True]]) if n else np.zeros(0, bool)
    cols = [np.log(proba + 1e-4)]
    for shift, edge in ((1, initial), (-1, final)):  # previous, next
        nb = np.roll(belief, shift, axis=0)
        nb[edge] = 0.0
        cols += [nb, (np.roll(caps, shift) & ~edge)[:, None], edge[:, None]]
    cols += [(caps & ~initial)[:, None], (caps & initial)[:, None], upper[:, None]]
    low = np.zeros((n, n_labels + 1))
    for i, t in enumerate(tokens):
        counts = lowercase.get(t.lower())
        if counts:
            c = np.asarray(counts, float)
            low[i, :n_labels] = c / c.sum()
        else:
            low[i, n_labels] = 1.0
    cols.append(low)
    # Mean belief over the other tokens of the sentence (English comes in runs).
    sums = np.zeros((int(runs.max()) + 1 if n else 0, n_labels))
    np.add.at(sums, runs, belief)
    size = np.bincount(runs, minlength=len(sums)).astype(float) if n else np.zeros(0)
    others = (size[runs] - 1.0)[:, None]
    cols.append(np.where(others > 0, (sums[runs] - belief) / np.maximum(others, 1.0), 0.0))
    cols.append(np.ones((n, 1)))  # bias
    return np.hstack([np.asarray(c, float) for c in cols])
