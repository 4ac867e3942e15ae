"""Small exact statistics every service reports with: proportions with 95 % Wilson intervals, nearest-rank
percentiles and Fisher's exact test. Pure code, standard library only.

One home so a score's interval (scorer) and a survey's response rate (actions) are computed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The two-sided 95 % quantile of the standard normal distribution.
Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for a proportion, as fractions 0..1."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Proportion:
    """``successes`` of ``n`` with its 95 % Wilson interval; every bound is None when ``n`` is 0."""

    successes: int
    n: int
    value: float | None
    ci_low: float | None
    ci_high: float | None

    def below(self, threshold: float, *, min_n: int) -> bool:
        """The point value is under ``threshold`` on a sample large enough (``min_n``) to say so."""
        return self.n >= min_n and self.value is not None and self.value < threshold


def proportion(successes: int, n: int) -> Proportion:
    """A proportion and its interval; refuses counts that cannot be one (negative, more than ``n``)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"{successes} of {n} is not a proportion")
    low, high = wilson_interval(successes, n)
    return Proportion(successes, n, successes / n if n else None, low, high)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (an observed value, never an interpolation); None for no values."""
    if not 0 < q <= 100:
        raise ValueError("q must be in (0, 100]")
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_less(x1: int, n1: int, x2: int, n2: int) -> float:
    """One-sided Fisher exact p-value that sample 1's rate is lower than sample 2's.

    Conditional on the total successes, P(X <= x1) under the hypergeometric law; exact for any size,
    including the few answers a day where the normal approximation is wrong.
    """
    for count, size in ((x1, n1), (x2, n2)):
        if size < 0 or count < 0 or count > size:
            raise ValueError(f"{count} of {size} is not a sample")
    total, drawn = x1 + x2, n1 + n2
    if n1 == 0 or n2 == 0 or total in (0, drawn):
        return 1.0
    low = max(0, total - n2)
    denominator = _log_choose(drawn, n1)
    terms = [
        _log_choose(total, k) + _log_choose(drawn - total, n1 - k) - denominator for k in range(low, x1 + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))
