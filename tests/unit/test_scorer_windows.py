"""Window planning over minute/hour/day tiers: exact to the minute, snapped only where data is pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from services.scorer.windows import (
    DAY,
    HOUR,
    MINUTE,
    Span,
    ceil_to,
    floor_to,
    make_tiers,
    plan_series,
    plan_window,
    prune_cutoffs,
    rolling,
)

NOW = datetime(2026, 11, 23, 10, 17, 42, tzinfo=UTC)
TIERS = make_tiers(minute_retention=timedelta(days=35), hour_retention=timedelta(days=800))


def covered(spans: tuple[Span, ...]) -> list[tuple[datetime, datetime]]:
    """Merge the spans, checking they never overlap and leave no gap."""
    ordered = sorted(spans, key=lambda s: s.start)
    for a, b in pairwise(ordered):
        assert a.end == b.start, f"gap or overlap between {a} and {b}"
    return [(ordered[0].start, ordered[-1].end)]


def test_rolling_24h_is_exact_to_the_minute() -> None:
    comp = rolling(timedelta(hours=24), now=NOW, tiers=TIERS)
    end = datetime(2026, 11, 23, 10, 18, tzinfo=UTC)
    assert (comp.current.start, comp.current.end) == (end - timedelta(hours=24), end)
    assert comp.current.precision == "minute"
    assert covered(comp.current.spans) == [(comp.current.start, comp.current.end)]
    # 10:18 yesterday -> 11:00 in minutes, whole hours, then 10:00 -> 10:18 today in minutes.
    tiers = [(s.tier, s.start, s.end) for s in comp.current.spans]
    assert tiers[0] == (
        "minute",
        datetime(2026, 11, 22, 10, 18, tzinfo=UTC),
        datetime(2026, 11, 22, 11, tzinfo=UTC),
    )
    assert tiers[-1] == ("minute", datetime(2026, 11, 23, 10, tzinfo=UTC), end)
    assert {s.tier for s in comp.current.spans} == {"minute", "hour"}
    assert (comp.previous.start, comp.previous.end) == (end - timedelta(hours=48), end - timedelta(hours=24))


def test_thirty_days_reads_few_buckets() -> None:
    plan = rolling(timedelta(days=30), now=NOW, tiers=TIERS).current
    assert covered(plan.spans) == [(plan.start, plan.end)]
    buckets = sum(
        (s.end - s.start) // {"minute": MINUTE, "hour": HOUR, "day": DAY}[s.tier] for s in plan.spans
    )
    assert buckets <= 29 + 2 * 23 + 2 * 59
    assert [s.tier for s in plan.spans].count("day") == 1


def test_old_edges_snap_to_what_is_kept_and_say_so() -> None:
    comp = rolling(timedelta(days=30), now=NOW, tiers=TIERS)
    # The previous 30 days start 60 days back: past minute retention, so the start is a whole hour.
    assert comp.previous.start == floor_to(comp.current.start - timedelta(days=30), HOUR)
    assert comp.previous.precision == "hour"
    assert all(s.tier != "minute" or s.start >= NOW - timedelta(days=35) for s in comp.previous.spans)
    # Year ago: 52 weeks back, hour precision (hour buckets are kept 800 days).
    assert comp.year_ago.start == floor_to(comp.current.start - timedelta(days=364), HOUR)
    assert comp.year_ago.end == ceil_to(comp.current.end - timedelta(days=364), HOUR)
    assert covered(comp.year_ago.spans) == [(comp.year_ago.start, comp.year_ago.end)]
    assert {s.tier for s in comp.year_ago.spans} <= {"hour", "day"}


def test_beyond_hour_retention_whole_days() -> None:
    start = NOW - timedelta(days=1000)
    plan = plan_window(start, start + timedelta(days=10), now=NOW, tiers=TIERS)
    assert plan.precision == "day"
    assert plan.start == floor_to(start, DAY)
    assert {s.tier for s in plan.spans} == {"day"}


@pytest.mark.parametrize("minutes", [1, 15, 59, 60, 61, 24 * 60 + 7, 7 * 24 * 60, 35 * 24 * 60])
def test_any_window_within_minute_retention_is_exact(minutes: int) -> None:
    plan = rolling(timedelta(minutes=minutes), now=NOW, tiers=TIERS).current
    assert covered(plan.spans) == [(plan.start, plan.end)]
    assert plan.end - plan.start == timedelta(minutes=minutes)
    assert plan.precision == "minute"


def test_ninety_days_starts_on_a_whole_hour() -> None:
    plan = rolling(timedelta(days=90), now=NOW, tiers=TIERS).current
    assert covered(plan.spans) == [(plan.start, plan.end)]
    assert plan.start == datetime(2026, 8, 25, 10, tzinfo=UTC)
    assert (plan.end, plan.precision) == (datetime(2026, 11, 23, 10, 18, tzinfo=UTC), "hour")


def test_floor_and_ceil() -> None:
    t = datetime(2026, 11, 23, 10, 17, 42, tzinfo=UTC)
    assert floor_to(t, HOUR) == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert ceil_to(t, DAY) == datetime(2026, 11, 24, tzinfo=UTC)
    assert ceil_to(floor_to(t, MINUTE), MINUTE) == floor_to(t, MINUTE)


def test_tiers_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="at least as long"):
        make_tiers(minute_retention=timedelta(days=10), hour_retention=timedelta(days=5))


def test_series_picks_the_coarsest_tier_that_fits() -> None:
    daily = plan_series(timedelta(days=30), DAY, now=NOW, tiers=TIERS)
    assert (daily.tier, daily.points, daily.end) == ("day", 30, datetime(2026, 11, 24, tzinfo=UTC))
    hourly = plan_series(timedelta(days=2), HOUR, now=NOW, tiers=TIERS)
    assert (hourly.tier, hourly.points) == ("hour", 48)
    fine = plan_series(timedelta(hours=1), timedelta(minutes=5), now=NOW, tiers=TIERS)
    assert (fine.tier, fine.points) == ("minute", 12)
    short = make_tiers(minute_retention=timedelta(days=1), hour_retention=timedelta(days=800))
    with pytest.raises(ValueError, match="no longer kept"):
        plan_series(timedelta(days=2), timedelta(minutes=30), now=NOW, tiers=short)
    with pytest.raises(ValueError, match="at most"):
        plan_series(timedelta(days=30), MINUTE, now=NOW, tiers=TIERS)
    with pytest.raises(ValueError, match="whole number of steps"):
        plan_series(timedelta(hours=5), timedelta(hours=2), now=NOW, tiers=TIERS)


@pytest.mark.parametrize(
    "later", [timedelta(0), timedelta(seconds=1), timedelta(hours=13), timedelta(days=40)]
)
@pytest.mark.parametrize("span_days", [1, 7, 30, 35, 90, 365, 800])
def test_no_plan_reads_a_bucket_below_the_cutoff_writers_skip(later: timedelta, span_days: int) -> None:
    """A bucket skipped when written at NOW (below ``prune_cutoffs``) is never read by a later plan."""
    cutoffs = prune_cutoffs(TIERS, now=NOW)
    assert set(cutoffs) == {"minute", "hour"}
    comparison = rolling(timedelta(days=span_days), now=NOW + later, tiers=TIERS)
    for plan in (comparison.current, comparison.previous, comparison.year_ago):
        for span in plan.spans:
            if span.tier in cutoffs:
                assert span.start >= cutoffs[span.tier], (span_days, later, span)
