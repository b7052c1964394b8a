"""Character n-gram profiles (Cavnar & Trenkle): the alternative sentence metrics and the
n-gram columns of the language-distance report."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

def word_ngrams(word: str) -> list[str]:
    """Character 1-, 2- and 3-grams of a word padded with one space each side
    ("ab" -> a, b, " a", "ab", "b ", " ab", "ab "); the pad alone is not a gram."""
    padded = f" {word} "
    return (list(word) + [padded[i:i + 2] for i in range(len(padded) - 1)]
            + [padded[i:i + 3] for i in range(len(padded) - 2)])


@dataclass(frozen=True)
class NgramProfile:
    """The ``size`` most frequent n-grams (count desc, then gram), with their rank and
    their relative frequency within their order n (so 1-, 2- and 3-grams weigh alike)."""

    ranks: Mapping[str, int]
    weights: Mapping[str, float]
    norm: float

    @classmethod
    def from_counts(cls, counts: Mapping[str, int], size: int) -> NgramProfile:
        totals = [0, 0, 0, 0]
        for g, c in counts.items():
            totals[len(g)] += c
        top = sorted(counts.items(), key=lambda gc: (-gc[1], gc[0]))[:size]
        weights = {g: c / totals[len(g)] for g, c in top}
        return cls({g: r for r, (g, _) in enumerate(top)}, weights,
                   math.sqrt(sum(w * w for w in weights.values())))

    def cosine_distance(self, other: NgramProfile) -> float:
        """1 - cosine similarity of the two profiles' weight vectors (1.0 if either is empty)."""
        if not self.norm or not other.norm:
            return 1.0
        small, large = (self, other) if len(self.weights) <= len(other.weights) else (other, self)
        dot = sum(w * large.weights.get(g, 0.0) for g, w in small.weights.items())
        return min(1.0, max(0.0, 1.0 - dot / (self.norm * other.norm)))

    def out_of_place(self, reference: NgramProfile) -> float:
        """Cavnar & Trenkle's out-of-place measure from this profile to ``reference``:
        sum over this profile's grams of |rank here - rank there|, a gram missing there
        costing the maximum P = len(reference); divided by len(self) * P -> [0, 1]."""
        penalty = len(reference.ranks)
        if not self.ranks or not penalty:
            return 1.0
        ref = reference.ranks
        total = sum(min(abs(r - ref[g]), penalty) if g in ref else penalty for g, r in self.ranks.items())
        return total / (len(self.ranks) * penalty)

