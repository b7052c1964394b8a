"""Language mixing: how many rows each language contributes, decided row by row.

Which rows a language contributes is decided by a seeded hash of the row id, so any
worker can decide for its own rows and the choice does not depend on order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np

def temperature_weights(counts: Mapping[str, int], alpha: float) -> dict[str, float]:
    """Sampling weights p_i ∝ n_i ** alpha: alpha=1 proportional, alpha=0 uniform.

    Small alpha (0.3 is common) up-weights low-resource languages. Languages with
    no rows get weight 0 whatever alpha is: there is nothing to sample.
    """
    if alpha < 0 or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")
    if any(n < 0 for n in counts.values()):
        raise ValueError(f"negative count in {dict(counts)}")
    present = {lang: n for lang, n in counts.items() if n > 0}
    if not present:
        raise ValueError("temperature_weights needs at least one language with rows")
    logs = {lang: alpha * math.log(n) for lang, n in present.items()}
    top = max(logs.values())  # exponentiate relative to the largest: no overflow for large alpha
    raw = {lang: math.exp(v - top) for lang, v in logs.items()}
    z = sum(raw.values())
    return {lang: raw[lang] / z if lang in raw else 0.0 for lang in counts}


def explicit_weights(ratios: Mapping[str, float]) -> dict[str, float]:
    """User-given ratios (any scale) normalised to sum to 1."""
    if any(r < 0 or not math.isfinite(r) for r in ratios.values()):
        raise ValueError(f"ratios must be finite and >= 0, got {dict(ratios)}")
    z = sum(ratios.values())
    if z <= 0:
        raise ValueError("explicit_weights needs at least one positive ratio")
    return {lang: r / z for lang, r in ratios.items()}


def _unit_hash(*parts: object) -> float:
    """A number in [0, 1) from a stable hash of ``parts`` (same on every worker and run)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64


def sample_plan(counts: Mapping[str, int], weights: Mapping[str, float], total: int | None = None,
                seed: int = 0) -> dict[str, int]:
    """Rows to take per language so the mix follows ``weights``; sums to ``total``.

    ``total`` defaults to all rows. A language may get more rows than it has (they
    are repeated by ``select_rows``). Rounding is largest-remainder, ties broken by
    a seeded hash, so the plan is exact and the same for the same seed.
    """
    total = sum(counts.values()) if total is None else total
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    z = sum(weights.get(lang, 0.0) for lang in counts)
    if z <= 0:
        raise ValueError("sample_plan: no language in counts has a positive weight")
    for lang in counts:
        if weights.get(lang, 0.0) > 0 and counts[lang] <= 0:
            raise ValueError(f"language {lang!r} has weight {weights[lang]} but no rows")
    exact = {lang: total * weights.get(lang, 0.0) / z for lang in counts}
    plan = {lang: math.floor(x) for lang, x in exact.items()}
    left = total - sum(plan.values())
    order = sorted((lang for lang in counts if weights.get(lang, 0.0) > 0),
                   key=lambda lang: (-(exact[lang] - plan[lang]), _unit_hash(seed, "plan", lang)))
    for lang in order[:left]:
        plan[lang] += 1
    return plan


def row_key(row_id: str, lang: str, seed: int) -> float:
    """Where a row falls in its language's seeded order, in [0, 1)."""
    return _unit_hash(seed, lang, row_id)


def select_rows(ids: Sequence[str], lang: str, n: int, seed: int = 0) -> np.ndarray:
    """Indices into ``ids`` of the ``n`` rows to take (ascending), repeating rows when n > len(ids).

    Rows are ranked by a seeded hash of their id, so the chosen set does not depend
    on the order of ``ids``, and a worker holding only some rows can decide its own:
    with ``q = n // len`` and ``r = n % len``, a row is taken ``q + 1`` times if its
    key is among the ``r`` smallest, else ``q`` times (``repeat_counts`` does the same
    from a rate without knowing the other rows, at the cost of an inexact total).
    """
    m = len(ids)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if m == 0:
        if n:
            raise ValueError(f"cannot take {n} rows of {lang!r}: it has none")
        return np.zeros(0, np.int64)
    q, r = divmod(n, m)
    copies = np.full(m, q, dtype=np.int64)
    if r:
        keys = np.fromiter((row_key(i, lang, seed) for i in ids), dtype=np.float64, count=m)
        copies[np.argsort(keys, kind="stable")[:r]] += 1
    return np.repeat(np.arange(m, dtype=np.int64), copies)


def repeat_counts(ids: Sequence[str], lang: str, rate: float, seed: int = 0) -> np.ndarray:
    """Copies of each row for a sampling rate (plan[lang] / counts[lang]), decided row by row.

    ``floor(rate)`` copies plus one more when the row's key is below the fractional
    part: no coordination between workers, expected total ``rate * len(ids)``.
    """
    if rate < 0:
        raise ValueError(f"rate must be >= 0, got {rate}")
    base, frac = divmod(rate, 1.0)
    keys = np.fromiter((row_key(i, lang, seed) for i in ids), dtype=np.float64, count=len(ids))
    return (int(base) + (keys < frac)).astype(np.int64)
