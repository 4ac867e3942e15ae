"""Send-time rules, pure: quiet hours in the recipient's zone, the local day for caps, backoff, address keys.

No I/O: the dispatcher passes the clock and the stored facts in and acts on the answers.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.security.hashing import AddressHasher, HashKind

_WINDOW = re.compile(r"^\s*(\d{1,2}:\d{2}(?::\d{2})?)\s*-\s*(\d{1,2}:\d{2}(?::\d{2})?)\s*$")


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window in local time when customer SMS wait; ``start > end`` spans midnight (21:00-08:00)."""

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


def local_day(now: datetime, zone: tzinfo) -> date:
    """The recipient's calendar day: the daily cap resets at their midnight, not the server's."""
    return now.astimezone(zone).date()


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff after ``attempt`` (1-based) failures, jittered; a longer Retry-After wins."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    jitter = (rng or random).uniform(ceiling / 2, ceiling)
    return max(jitter, retry_after or 0.0)


def normalise_address(scope: str, address: str) -> str:
    """Emails compare case-insensitively; phone numbers by their digits (with a leading +)."""
    value = address.strip()
    if scope == "email":
        return value.lower()
    if scope == "sms":
        digits = re.sub(r"[^\d]", "", value)
        return ("+" if value.startswith(("+", "00")) else "") + digits.removeprefix("00")
    return value


def legacy_address_key(scope: str, address: str) -> str:
    """The unkeyed SHA-256 entries of releases before keyed hashes: still matched, never written."""
    return hashlib.sha256(f"{scope}:{normalise_address(scope, address)}".encode()).hexdigest()


_HASH_KIND: dict[str, HashKind] = {"email": "email", "sms": "phone"}


@dataclass(frozen=True, slots=True)
class AddressKeys:
    """Keyed hashes of addresses (``CSAT_ADDRESS_HASH_KEY``): what the suppression list, the per-address
    daily cap and unsubscribe tokens hold instead of the address. An unkeyed hash is reversed by hashing
    a list of addresses; a keyed one is not without the key."""

    hasher: AddressHasher

    def key(self, scope: str, address: str) -> str:
        """The key stored for ``address`` (``scope`` is ``email`` or ``sms``)."""
        return self.hasher.hash(_HASH_KIND[scope], normalise_address(scope, address))

    def candidates(self, scope: str, address: str) -> tuple[str, ...]:
        """Every key a stored entry for ``address`` may have: each configured key, then the legacy hash."""
        keyed = self.hasher.candidates(_HASH_KIND[scope], normalise_address(scope, address))
        return (*keyed, legacy_address_key(scope, address))
