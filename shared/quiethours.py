"""Quiet hours in a person's own time zone: when a message to a customer should wait (pure).

The notifier defers SMS inside the window; survey definitions shift a send that would fall in it. DST
transitions are handled: a wall-clock time that never shows (spring forward) moves on to the transition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WINDOW = re.compile(r"^\s*(\d{1,2}:\d{2}(?::\d{2})?)\s*-\s*(\d{1,2}:\d{2}(?::\d{2})?)\s*$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in local time when messages to customers wait; ``start > end`` spans midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``"21:00-08:00"`` (seconds allowed); ``"off"`` or an empty string disables quiet hours."""
        if text.strip().lower() in ("", "off", "none"):
            return None
        match = _WINDOW.match(text)
        if not match:
            raise ValueError(f"quiet hours {text!r} must look like 21:00-08:00 (or 'off')")
        start, end = (time.fromisoformat(_pad(p)) for p in match.groups())
        if start == end:
            raise ValueError("quiet hours start and end must differ (use 'off' to disable)")
        return cls(start=start, end=end)

    def contains(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def deferral(self, now: datetime, zone: tzinfo) -> datetime | None:
        """When a message due ``now`` may go out, if ``now`` falls in the window; None when it may go now."""
        local = now.astimezone(zone)
        wall = local.time().replace(tzinfo=None)
        if not self.contains(wall):
            return None
        end_day = local.date()
        if self.start > self.end and wall >= self.start:
            end_day += timedelta(days=1)
        return wall_clock(end_day, self.end, zone)


def wall_clock(day: date, at: time, zone: tzinfo) -> datetime:
    """The first instant at or after the wall-clock time ``at`` on ``day`` in ``zone`` (DST gaps move on)."""
    naive = datetime.combine(day, at)
    utc = ZoneInfo("UTC")
    early = naive.replace(tzinfo=zone, fold=1).astimezone(utc)
    late = naive.replace(tzinfo=zone, fold=0).astimezone(utc)
    if early >= late:
        # An ordinary time, or a repeated one (autumn): fold=0 is its first occurrence.
        return naive.replace(tzinfo=zone, fold=0)
    # A spring-forward gap: the wall time never shows; the clock passes it at the transition instant.
    while late - early > timedelta(seconds=1):
        middle = early + (late - early) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= naive:
            late = middle
        else:
            early = middle
    if late.microsecond:
        late += timedelta(microseconds=1_000_000 - late.microsecond)
    return late.astimezone(zone)


def _pad(part: str) -> str:
    hours, _, rest = part.partition(":")
    return f"{int(hours):02d}:{rest}"


def zone_for(name: str | None, default: tzinfo) -> tzinfo:
    """The recipient's IANA zone, or the configured default when it is missing or unknown."""
    if not name:
        return default
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default
