"""Send-time rules: quiet hours in the recipient's zone (DST included), local days, backoff, address keys."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.notifier.policy import (
    AddressKeys,
    QuietHours,
    backoff_delay,
    legacy_address_key,
    local_day,
    normalise_address,
    wall_clock,
    zone_for,
)
from services.notifier.providers import Verdict
from services.notifier.providers.http import failure, retry_after
from services.notifier.providers.slack import mrkdwn_escape
from shared.security.hashing import AddressHasher

PARIS = ZoneInfo("Europe/Paris")
NY = ZoneInfo("America/New_York")
NIGHT = QuietHours.parse("21:00-08:00")
LUNCH = QuietHours.parse("12:00-14:00")
KEYS = AddressKeys(AddressHasher(["unit-test-address-hash-key-32-chars-long"]))


def _at(zone: ZoneInfo, year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=zone)


@pytest.mark.parametrize(
    ("window", "local_now", "expected"),
    [
        # Overnight window, evening: wait until tomorrow 08:00.
        (NIGHT, _at(PARIS, 2026, 6, 1, 21, 0), _at(PARIS, 2026, 6, 2, 8, 0)),
        (NIGHT, _at(PARIS, 2026, 6, 1, 23, 59, 59), _at(PARIS, 2026, 6, 2, 8, 0)),
        # Overnight window, early morning: wait until 08:00 the same day.
        (NIGHT, _at(PARIS, 2026, 6, 2, 0, 0), _at(PARIS, 2026, 6, 2, 8, 0)),
        (NIGHT, _at(PARIS, 2026, 6, 2, 7, 59, 59), _at(PARIS, 2026, 6, 2, 8, 0)),
        # Outside the window: now.
        (NIGHT, _at(PARIS, 2026, 6, 2, 8, 0), None),
        (NIGHT, _at(PARIS, 2026, 6, 2, 20, 59, 59), None),
        # A daytime window.
        (LUNCH, _at(NY, 2026, 6, 2, 12, 30), _at(NY, 2026, 6, 2, 14, 0)),
        (LUNCH, _at(NY, 2026, 6, 2, 14, 0), None),
        (LUNCH, _at(NY, 2026, 6, 2, 11, 59), None),
        # The night the clocks go forward in Paris (02:00 -> 03:00): still 08:00 local, 06:00 UTC.
        (NIGHT, _at(PARIS, 2026, 3, 28, 22, 0), _at(PARIS, 2026, 3, 29, 8, 0)),
        # The night they go back (03:00 -> 02:00): 08:00 local is 07:00 UTC.
        (NIGHT, _at(PARIS, 2026, 10, 24, 23, 0), _at(PARIS, 2026, 10, 25, 8, 0)),
    ],
)
def test_quiet_hours_defer_to_the_end_of_the_window(
    window: QuietHours | None, local_now: datetime, expected: datetime | None
) -> None:
    assert window is not None and local_now.tzinfo is not None
    zone = local_now.tzinfo
    until = window.deferral(local_now.astimezone(UTC), zone)
    if expected is None:
        assert until is None
    else:
        assert until == expected
        assert until.astimezone(zone).time() == window.end


def test_dst_instants_are_exact() -> None:
    spring = NIGHT.deferral(datetime(2026, 3, 28, 22, 0, tzinfo=PARIS), PARIS)  # type: ignore[union-attr]
    autumn = NIGHT.deferral(datetime(2026, 10, 24, 23, 0, tzinfo=PARIS), PARIS)  # type: ignore[union-attr]
    assert spring is not None and spring.astimezone(UTC) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert autumn is not None and autumn.astimezone(UTC) == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)


def test_a_window_ending_inside_the_spring_gap_ends_at_the_transition() -> None:
    # 02:30 does not exist in Paris on 29 March 2026: the clock jumps from 02:00 to 03:00 (01:00 UTC).
    at = wall_clock(date(2026, 3, 29), time(2, 30), PARIS)
    assert at.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    # An ambiguous autumn time is its first occurrence.
    first = wall_clock(date(2026, 10, 25), time(2, 30), PARIS)
    assert first.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "ok"),
    [("21:00-08:00", True), ("9:00-17:30", True), ("21:00:30-07:59:59", True), ("off", True), ("", True),
     ("21-08", False), ("25:00-08:00", False), ("08:00-08:00", False)],
)  # fmt: skip
def test_quiet_hours_parse(text: str, ok: bool) -> None:
    if ok:
        QuietHours.parse(text)
    else:
        with pytest.raises(ValueError):  # noqa: PT011 - the message is the parser's own
            QuietHours.parse(text)


def test_unknown_or_missing_zone_falls_back_to_the_default() -> None:
    assert zone_for("Europe/Paris", UTC) == PARIS
    assert zone_for(None, PARIS) == PARIS
    assert zone_for("Mars/Olympus_Mons", NY) == NY
    assert zone_for("../../etc/passwd", NY) == NY


def test_the_daily_cap_day_is_the_recipients_day() -> None:
    instant = datetime(2026, 6, 1, 22, 30, tzinfo=UTC)
    assert local_day(instant, UTC) == date(2026, 6, 1)
    assert local_day(instant, PARIS) == date(2026, 6, 2)
    assert local_day(instant, NY) == date(2026, 6, 1)


def test_backoff_grows_is_jittered_capped_and_yields_to_retry_after() -> None:
    rng = random.Random(7)
    for attempt, (low, high) in enumerate(
        [(1, 2), (2, 4), (4, 8), (8, 16), (16, 32), (30, 60), (30, 60)], start=1
    ):
        delays = [backoff_delay(attempt, base=2, cap=60, rng=rng) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert len(set(delays)) > 100  # jitter spreads a thundering herd
    assert backoff_delay(1, base=2, cap=60, retry_after=30, rng=rng) == 30
    assert backoff_delay(6, base=2, cap=60, retry_after=1, rng=rng) >= 30


@pytest.mark.parametrize(
    ("scope", "a", "b"),
    [("email", "Ana@Example.COM ", "ana@example.com"), ("sms", "+33 6 12-34-56-78", "+33612345678"),
     ("sms", "0033612345678", "+33612345678"), ("sms", "(212) 555-0100", "2125550100")],
)  # fmt: skip
def test_address_keys_match_equivalent_addresses(scope: str, a: str, b: str) -> None:
    assert normalise_address(scope, a) == b
    assert KEYS.key(scope, a) == KEYS.key(scope, b)
    assert b not in KEYS.key(scope, a) and len(KEYS.key(scope, a)) == 64
    assert KEYS.candidates(scope, a) == KEYS.candidates(scope, b)


def test_address_keys_differ_by_scope() -> None:
    assert KEYS.key("email", "x") != KEYS.key("sms", "x")
    assert legacy_address_key("email", "x") != legacy_address_key("sms", "x")


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "https://p.example/x"))


@pytest.mark.parametrize(
    ("status", "verdict", "kind"),
    [(429, Verdict.RETRY, "rate_limited"), (408, Verdict.RETRY, "server_error"),
     (500, Verdict.RETRY, "server_error"), (503, Verdict.RETRY, "server_error"),
     (400, Verdict.REJECTED, "rejected"), (401, Verdict.REJECTED, "rejected"),
     (403, Verdict.REJECTED, "rejected"), (404, Verdict.REJECTED, "rejected"),
     (413, Verdict.REJECTED, "rejected"), (422, Verdict.REJECTED, "rejected")],
)  # fmt: skip
def test_status_codes_sort_into_verdicts(status: int, verdict: Verdict, kind: str) -> None:
    result = failure(_response(status), "detail")
    assert (result.verdict, result.kind) == (verdict, kind)


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert retry_after(_response(429, {"Retry-After": "7"}), now=now) == 7.0
    assert retry_after(_response(429, {"Retry-After": "Mon, 01 Jun 2026 12:00:30 GMT"}), now=now) == 30.0
    assert retry_after(_response(429, {"Retry-After": "Mon, 01 Jun 2026 11:00:00 GMT"}), now=now) == 0.0
    assert retry_after(_response(429, {"Retry-After": "soon"}), now=now) is None
    assert retry_after(_response(429), now=now) is None


def test_slack_control_characters_are_escaped() -> None:
    assert mrkdwn_escape("<!channel> a & b > c") == "&lt;!channel&gt; a &amp; b &gt; c"
