"""Proportions with Wilson intervals, nearest-rank percentiles and Fisher's exact test, on worked tables."""

from __future__ import annotations

from fractions import Fraction
from math import comb

import pytest

from shared.stats import fisher_less, percentile, proportion


@pytest.mark.parametrize(
    ("successes", "n", "value", "low", "high"),
    [
        (0, 0, None, None, None),
        (150, 200, 0.75, 0.6857, 0.8049),
        (1, 1, 1.0, 0.2065, 1.0),
        (0, 10, 0.0, 0.0, 0.2775),
        (300, 1000, 0.3, 0.2724, 0.3291),
    ],
)
def test_proportion_with_its_wilson_interval(
    successes: int, n: int, value: float | None, low: float | None, high: float | None
) -> None:
    p = proportion(successes, n)
    assert p.value == value
    assert (p.ci_low, p.ci_high) == (
        (None, None) if low is None else (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
    )


@pytest.mark.parametrize(("successes", "n"), [(-1, 3), (4, 3), (0, -1)])
def test_what_is_not_a_proportion_is_refused(successes: int, n: int) -> None:
    with pytest.raises(ValueError, match="not a proportion"):
        proportion(successes, n)


@pytest.mark.parametrize(
    ("successes", "n", "threshold", "min_n", "below"),
    [
        (5, 100, 0.10, 30, True),  # 5 % < 10 % on enough invitations
        (5, 20, 0.10, 30, False),  # too few to say
        (10, 100, 0.10, 30, False),  # exactly the threshold is not below it
        (0, 0, 0.10, 0, False),  # nothing sent: no rate at all
    ],
)
def test_below_a_threshold_needs_a_sample(
    successes: int, n: int, threshold: float, min_n: int, below: bool
) -> None:
    assert proportion(successes, n).below(threshold, min_n=min_n) is below


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([7.0], 90, 7.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),  # nearest rank: ceil(0.5 * 4) = 2nd value
        ([4.0, 1.0, 3.0, 2.0], 90, 4.0),  # unsorted input; ceil(3.6) = 4th
        ([float(v) for v in range(1, 11)], 90, 9.0),
        ([float(v) for v in range(1, 11)], 100, 10.0),
    ],
)
def test_nearest_rank_percentile(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected


def _fisher_exact_oracle(x1: int, n1: int, x2: int, n2: int) -> Fraction:
    """P(X <= x1) for the hypergeometric law, in exact rationals (an independent computation)."""
    total = x1 + x2
    denominator = comb(n1 + n2, n1)
    return sum(
        (Fraction(comb(total, k) * comb(n1 + n2 - total, n1 - k), denominator) for k in range(x1 + 1)),
        Fraction(0),
    )


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [
        (1, 4, 3, 4),  # the tea-tasting table: 17/70
        (0, 20, 60, 200),  # a broken template: nobody answered today, 30 % usually
        (5, 20, 60, 200),  # 25 % against 30 %: nothing unusual
        (3, 50, 900, 3000),
        (40, 100, 30, 100),  # today is better: p close to 1
    ],
)
def test_fisher_matches_exact_rationals(x1: int, n1: int, x2: int, n2: int) -> None:
    assert fisher_less(x1, n1, x2, n2) == pytest.approx(float(_fisher_exact_oracle(x1, n1, x2, n2)), rel=1e-9)


def test_fisher_worked_values_and_degenerate_samples() -> None:
    assert fisher_less(1, 4, 3, 4) == pytest.approx(17 / 70)
    assert 0.001 < fisher_less(0, 20, 60, 200) < 0.0013  # C(160, 20) / C(220, 20)
    assert fisher_less(0, 0, 60, 200) == 1.0  # nothing sent today: no evidence
    assert fisher_less(0, 20, 0, 200) == 1.0  # nobody ever answers: no drop to find
    with pytest.raises(ValueError, match="not a sample"):
        fisher_less(5, 4, 1, 10)
