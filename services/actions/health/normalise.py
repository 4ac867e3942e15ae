"""Value -> 0-100: piecewise-linear thresholds, or the mid-rank percentile within the customer base. Pure.

The base distribution of a percentile component is the multiset of every subject's current value of
that component, each quantised to an integer number of ``resolution`` steps: a table of
``(step, count)``. One subject's new value moves one count (-1 on its old step, +1 on its new one), so
the table is kept incrementally, and since counts commute it ends the same whatever order the updates
arrive in. Scores read a frozen snapshot of it (:class:`BaseDistribution`): integers only, so the
percentile is exact and reproducible.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from services.actions.health.model import Direction, Threshold


def piecewise(points: Sequence[Threshold], value: float) -> float:
    """Linear between the points, flat beyond the first and the last."""
    if value <= points[0].value:
        return points[0].score
    if value >= points[-1].value:
        return points[-1].score
    i = bisect.bisect_right([p.value for p in points], value)
    lo, hi = points[i - 1], points[i]
    return lo.score + (hi.score - lo.score) * (value - lo.value) / (hi.value - lo.value)


@functools.lru_cache(maxsize=4096)
def decimal(value: float) -> Fraction:
    """A float as the decimal number it prints as (``2.005``, not its binary neighbour 2.00499...).
    Memoised (Fractions are immutable): parsing the repr was about 5% of the actions consumer's CPU at
    150 ratings/s, for the same few weights, thresholds and scores again and again."""
    return Fraction(repr(value))


def quantise(value: float, resolution: float) -> int:
    """The step a value counts in: the nearest multiple of ``resolution``, halves up, on the decimals."""
    return math.floor(decimal(value) / decimal(resolution) + Fraction(1, 2))


@dataclass(frozen=True, slots=True)
class BaseDistribution:
    """A frozen snapshot of the base: distinct steps in order, and how many subjects are at or below each."""

    resolution: float
    steps: tuple[int, ...] = ()
    cumulative: tuple[int, ...] = ()

    @classmethod
    def of(cls, counts: Mapping[int, int], *, resolution: float) -> BaseDistribution:
        steps = tuple(sorted(s for s, n in counts.items() if n > 0))
        running, cumulative = 0, []
        for s in steps:
            running += counts[s]
            cumulative.append(running)
        return cls(resolution, steps, tuple(cumulative))

    @classmethod
    def from_values(cls, values: Iterable[float], *, resolution: float) -> BaseDistribution:
        counts = BaseCounts(resolution=resolution)
        for v in values:
            counts.move(None, v)
        return counts.freeze()

    @property
    def size(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def percentile(self, value: float) -> float | None:
        """Share of the base below the value, plus half the share at it (mid-rank), 0..1."""
        if not self.steps:
            return None
        step = quantise(value, self.resolution)
        i = bisect.bisect_left(self.steps, step)
        below = self.cumulative[i - 1] if i else 0
        at = self.cumulative[i] - below if i < len(self.steps) and self.steps[i] == step else 0
        return (below + at / 2) / self.size


@dataclass(slots=True)
class BaseCounts:
    """The live table behind a base distribution, moved one subject at a time."""

    resolution: float
    counts: dict[int, int] = field(default_factory=dict)

    def move(self, old: float | None, new: float | None) -> None:
        """A subject's value changed from ``old`` to ``new`` (None: it had none / has none now)."""
        if old is not None:
            step = quantise(old, self.resolution)
            left = self.counts.get(step, 0) - 1
            if left < 0:
                raise ValueError(f"no subject was counted at {old!r}")
            if left:
                self.counts[step] = left
            else:
                del self.counts[step]
        if new is not None:
            step = quantise(new, self.resolution)
            self.counts[step] = self.counts.get(step, 0) + 1

    def freeze(self) -> BaseDistribution:
        return BaseDistribution.of(self.counts, resolution=self.resolution)


def oriented(score: float, direction: Direction) -> float:
    """A percentile's score turned so that 100 is always the healthy end."""
    return score if direction is Direction.HIGHER_IS_BETTER else 100.0 - score
