"""A customer's trend from their ratings: is satisfaction falling (a churn signal)? Pure code.

Every rating is first put on one 0-100 scale (100 = the best answer of its scale, whatever the
metric or direction), so a CSAT 4/5 and an NPS 8/10 can sit on one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

DAYS_30 = 30 * 86400.0


class Point(NamedTuple):
    """One rating on the common scale: when, and 0-100."""

    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Trend:
    """``direction`` compares the mean of the last ``k`` ratings with the ``k`` before them."""

    ratings: int
    mean: float | None
    slope_per_30d: float | None
    recent_mean: float | None
    previous_mean: float | None
    change: float | None
    direction: str | None


def trend(points: Sequence[Point], *, window: int = 5, significant: float = 10.0) -> Trend:
    """``points`` oldest first; the slope is least squares in points per 30 days."""
    n = len(points)
    if n == 0:
        return Trend(0, None, None, None, None, None, None)
    values = [p.value for p in points]
    mean = sum(values) / n
    slope: float | None = None
    if n >= 3:
        t0 = points[0].at
        xs = [(p.at - t0).total_seconds() / DAYS_30 for p in points]
        mx = sum(xs) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx > 0:
            slope = round(sum((x - mx) * (v - mean) for x, v in zip(xs, values, strict=True)) / sxx, 2)
    k = min(window, n // 2)
    if k == 0:
        return Trend(n, round(mean, 2), slope, None, None, None, None)
    recent = sum(values[-k:]) / k
    previous = sum(values[-2 * k : -k]) / k
    change = recent - previous
    direction = "declining" if change <= -significant else "improving" if change >= significant else "stable"
    return Trend(n, round(mean, 2), slope, round(recent, 2), round(previous, 2), round(change, 2), direction)
