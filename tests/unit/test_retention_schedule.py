"""The nightly retention run's timing: the next given hour in UTC, never now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from shared.retention import seconds_until


def test_the_next_run_is_tonight_or_tomorrow_at_the_hour() -> None:
    assert seconds_until(datetime(2026, 12, 5, 1, 30, tzinfo=UTC), 3) == 90 * 60
    assert seconds_until(datetime(2026, 12, 5, 3, 0, tzinfo=UTC), 3) == 24 * 3600
    assert seconds_until(datetime(2026, 12, 5, 23, 0, tzinfo=UTC), 0) == 3600


def test_the_hour_is_utc_whatever_the_clock_zone() -> None:
    paris = timezone(timedelta(hours=1))
    now = datetime(2026, 12, 5, 3, 30, tzinfo=paris)  # 02:30 UTC
    assert seconds_until(now, 3) == 30 * 60
