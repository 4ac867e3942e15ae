"""Counter tiers and window planning: which buckets of which tier sum to an exact window.

Every rating is counted in three tiers: minute buckets (kept ``minute`` retention), hour buckets (kept
``hour`` retention) and day buckets (kept for ever). A window sums the coarsest buckets that fit and
finer ones at its edges, so a rolling 30-day window reads about 30 day rows, 46 hour rows and 118
minute rows per (scale, score) whatever the traffic. An edge older than a tier's retention is snapped
outwards to the next coarser boundary, and the plan says so (``from``/``to`` and ``precision``).
Pure code: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Tier:
    """One bucket resolution and how long its rows are kept (``None``: for ever)."""

    name: str
    resolution: timedelta
    retention: timedelta | None

    def holds(self, ts: datetime, *, now: datetime) -> bool:
        """Whether buckets starting at ``ts`` are still kept (not pruned) at ``now``."""
        return self.retention is None or ts >= now - self.retention


def make_tiers(*, minute_retention: timedelta, hour_retention: timedelta) -> tuple[Tier, ...]:
    """The three tiers, finest first."""
    if hour_retention < minute_retention:
        raise ValueError("hour buckets must be kept at least as long as minute buckets")
    return (
        Tier("minute", MINUTE, minute_retention),
        Tier("hour", HOUR, hour_retention),
        Tier("day", DAY, None),
    )


def prune_cutoffs(tiers: Sequence[Tier], *, now: datetime) -> dict[str, datetime]:
    """Per tier with a retention: buckets starting before this are deleted by the retention job.

    A day of slack below the retention, so no query planned with :meth:`Tier.holds` ever misses a
    bucket. Writers skip buckets below it too (a replay, or a rating older than a tier keeps): they
    would only be pruned, and no plan made at ``now`` or later reads them.
    """
    return {
        tier.name: floor_to(now - tier.retention, DAY) - DAY for tier in tiers if tier.retention is not None
    }


def floor_to(ts: datetime, resolution: timedelta) -> datetime:
    """Floor to a multiple of ``resolution`` since the Unix epoch (UTC days, hours, minutes)."""
    steps = (ts - EPOCH) // resolution
    return (EPOCH + steps * resolution).astimezone(ts.tzinfo or UTC)


def ceil_to(ts: datetime, resolution: timedelta) -> datetime:
    floored = floor_to(ts, resolution)
    return floored if floored == ts else floored + resolution


@dataclass(frozen=True, slots=True)
class Span:
    """Buckets of one tier with ``start <= bucket_start < end``."""

    tier: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """An exact window ``[start, end)`` and the spans that sum to it."""

    start: datetime
    end: datetime
    spans: tuple[Span, ...]
    precision: str  # the coarsest resolution an edge had to be snapped to


def _finest_holding(ts: datetime, tiers: Sequence[Tier], now: datetime) -> Tier:
    for tier in tiers:
        if tier.holds(floor_to(ts, tier.resolution), now=now):
            return tier
    return tiers[-1]


def _decompose(start: datetime, end: datetime, coarse_first: Sequence[Tier]) -> list[Span]:
    if start >= end:
        return []
    tier, finer = coarse_first[0], coarse_first[1:]
    inner_start, inner_end = ceil_to(start, tier.resolution), floor_to(end, tier.resolution)
    if not finer:
        if inner_start != start or inner_end != end:
            raise ValueError(f"[{start}, {end}) is not aligned on {tier.name} buckets")
        return [Span(tier.name, start, end)]
    if inner_start >= inner_end:
        return _decompose(start, end, finer)
    return [
        *_decompose(start, inner_start, finer),
        Span(tier.name, inner_start, inner_end),
        *_decompose(inner_end, end, finer),
    ]


def plan_window(start: datetime, end: datetime, *, now: datetime, tiers: Sequence[Tier]) -> WindowPlan:
    """Snap ``[start, end)`` to what the tiers still hold and split it into per-tier spans."""
    if start >= end:
        raise ValueError("a window must end after it starts")
    start_tier = _finest_holding(start, tiers, now)
    end_tier = _finest_holding(end, tiers, now)
    snapped_start = floor_to(start, start_tier.resolution)
    snapped_end = ceil_to(end, end_tier.resolution)
    coarsest = max((start_tier, end_tier), key=lambda t: t.resolution)
    spans = tuple(_decompose(snapped_start, snapped_end, list(reversed(tiers))))
    return WindowPlan(snapped_start, snapped_end, spans, coarsest.name)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A rolling window with the windows it is compared with."""

    current: WindowPlan
    previous: WindowPlan
    year_ago: WindowPlan


def rolling(
    span: timedelta, *, now: datetime, tiers: Sequence[Tier], year: timedelta = timedelta(days=364)
) -> Comparison:
    """The window ending with the current minute, the one before it, and the same one ``year`` earlier.

    The year-ago window is 52 weeks back by default so weekdays line up (seasonality without a
    Saturday compared with a Friday).
    """
    end = floor_to(now, MINUTE) + MINUTE
    current = plan_window(end - span, end, now=now, tiers=tiers)
    length = current.end - current.start
    previous = plan_window(current.start - length, current.start, now=now, tiers=tiers)
    year_ago = plan_window(current.start - year, current.end - year, now=now, tiers=tiers)
    return Comparison(current, previous, year_ago)


@dataclass(frozen=True, slots=True)
class SeriesPlan:
    """A chart's buckets: ``points`` steps of ``step`` from ``start``, read from one tier."""

    tier: str
    start: datetime
    end: datetime
    step: timedelta
    points: int


def plan_series(
    window: timedelta,
    step: timedelta,
    *,
    now: datetime,
    tiers: Sequence[Tier],
    lead: timedelta = timedelta(0),
    max_points: int = 1500,
) -> SeriesPlan:
    """Steps aligned on the epoch covering ``window`` up to the current step; ``lead`` reads earlier data
    too (for rolling values). The tier is the coarsest whose buckets divide the step and are kept."""
    if step < MINUTE or step % MINUTE:
        raise ValueError("step must be a whole number of minutes")
    if window < step or window % step:
        raise ValueError("window must be a whole number of steps")
    points = window // step
    if points > max_points:
        raise ValueError(f"window/step gives {points} points; at most {max_points}")
    end = floor_to(now, step) + step
    start = end - window
    read_from = start - lead
    for tier in reversed(tiers):
        if step % tier.resolution == timedelta(0) and tier.holds(read_from, now=now):
            return SeriesPlan(tier.name, start, end, step, points)
    raise ValueError(
        f"step {step} needs buckets that are no longer kept for data that old; use a coarser step"
    )
