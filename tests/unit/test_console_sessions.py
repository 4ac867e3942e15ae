"""Sessions, CSRF tokens, the OpenID round-trip cookie and the sign-in redirect target (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.console.sessions import (
    CookieNames,
    CsrfTokens,
    RoundTrip,
    RoundTripCookie,
    SessionPolicy,
    SessionState,
    new_pre_session,
    pre_session_binding,
    safe_next,
    session_binding,
)
from shared.identity.ports import Session

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
POLICY = SessionPolicy(
    idle=timedelta(minutes=30), lifetime=timedelta(hours=8), touch_every=timedelta(minutes=1)
)


def session(*, last_seen: timedelta | None = None, ended: bool = False) -> Session:
    return Session(
        user_id="u_1",
        created_at=T0,
        expires_at=POLICY.expires_at(T0),
        last_seen_at=T0 + last_seen if last_seen is not None else None,
        ended_at=T0 if ended else None,
    )


@pytest.mark.parametrize(
    ("s", "at", "state"),
    [
        (session(), T0 + timedelta(minutes=29), SessionState.ACTIVE),
        (session(), T0 + timedelta(minutes=30), SessionState.IDLE),
        (
            session(last_seen=timedelta(hours=7, minutes=45)),
            T0 + timedelta(hours=7, minutes=59),
            SessionState.ACTIVE,
        ),
        (session(last_seen=timedelta(hours=7, minutes=59)), T0 + timedelta(hours=8), SessionState.EXPIRED),
        (session(ended=True), T0 + timedelta(seconds=1), SessionState.ENDED),
    ],
)
def test_a_session_ends_when_idle_too_old_or_signed_out(
    s: Session, at: datetime, state: SessionState
) -> None:
    assert POLICY.state(s, at) is state


def test_last_activity_is_written_at_most_once_a_minute() -> None:
    s = session(last_seen=timedelta(minutes=5))
    assert not POLICY.needs_touch(s, T0 + timedelta(minutes=5, seconds=59))
    assert POLICY.needs_touch(s, T0 + timedelta(minutes=6))


def test_csrf_tokens_are_bound_to_their_session_and_key() -> None:
    tokens = CsrfTokens(key=b"k" * 32)
    mine, theirs = session_binding(b"a" * 32), session_binding(b"b" * 32)
    token = tokens.token(mine)
    assert tokens.valid(mine, token)
    assert not tokens.valid(theirs, token)
    assert not CsrfTokens(key=b"other key" * 4).valid(mine, token)
    assert not tokens.valid(mine, None) and not tokens.valid(mine, "") and not tokens.valid(mine, token[:-1])


def test_a_pre_session_binds_only_values_the_console_issues() -> None:
    value = new_pre_session()
    binding = pre_session_binding(value)
    assert binding is not None and binding != pre_session_binding(new_pre_session())
    assert pre_session_binding(None) is None and pre_session_binding("short") is None
    # a pre-session token never passes for a session one, even over the same bytes
    assert pre_session_binding("a" * 43) != session_binding(b"a" * 43)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/scores?metric=csat&segment=store:paris-1", "/scores?metric=csat&segment=store:paris-1"),
        ("/", "/"),
        ("//evil.example.com/x", "/"),
        ("https://evil.example.com", "/"),
        ("/\\evil.example.com", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        (None, "/"),
        ("", "/"),
    ],
)
def test_after_sign_in_only_a_path_of_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_cookie_names_take_the_host_prefix_only_when_secure() -> None:
    assert CookieNames.for_security(secure=True).session == "__Host-csat_session"
    assert CookieNames.for_security(secure=False).session == "csat_session"


def test_the_round_trip_cookie_is_signed() -> None:
    cookie = RoundTripCookie(key=b"k" * 32)
    trip = RoundTrip("state-1", "nonce-1", "verifier-1", T0, "/alerts?status=open")
    value = cookie.dump(trip)
    assert cookie.load(value) == trip
    assert RoundTripCookie(key=b"x" * 32).load(value) is None
    assert cookie.load(value[:-2] + ("A" if value[-2] != "A" else "B") + value[-1]) is None
    assert cookie.load(None) is None and cookie.load("garbage") is None
    evil = RoundTrip("s", "n", "v", T0, "//evil.example.com")
    assert cookie.load(cookie.dump(evil)) == RoundTrip("s", "n", "v", T0, "/")
