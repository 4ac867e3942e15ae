"""The access tokens a person's console requests carry: minted, reused, refreshed, verifiable anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from services.console.apiclient import ApiClient, ApiError
from services.console.settings import ServiceUrls
from services.console.tokens import AccessTokens
from shared.identity.accesstokens import AccessTokenIssuer, AccessTokenVerifier, KeyRing, SigningKey
from shared.identity.principal import Principal, PrincipalKind, SegmentGrant
from shared.identity.scopes import ROLE_SCOPES, Role

KEY = SigningKey.generate()
ANA = Principal(
    subject="u_ana",
    kind=PrincipalKind.PERSON,
    role=Role.VIEWER,
    scopes=ROLE_SCOPES[Role.VIEWER],
    segments=frozenset({SegmentGrant.parse("store:paris-1")}),
)


class Clock:
    """Starts at the real time: PyJWT also checks expiry against the system clock."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def tokens(clock: Clock, **kw: int) -> AccessTokens:
    issuer = AccessTokenIssuer(key=KEY, issuer="csat-console", audience="csat-api", ttl_s=300, clock=clock)
    return AccessTokens(issuer=issuer, clock=clock, refresh_before=timedelta(seconds=60), **kw)


def verifier(clock: Clock) -> AccessTokenVerifier:
    return AccessTokenVerifier(
        keys=KeyRing.of([KEY]), issuer="csat-console", audience="csat-api", clock=clock
    )


def test_one_token_per_session_until_a_minute_before_it_expires() -> None:
    clock = Clock()
    held = tokens(clock)
    first = held.current(b"s1", ANA)
    assert verifier(clock).verify(first) == ANA
    start = clock.now
    clock.now += timedelta(seconds=239)
    assert held.current(b"s1", ANA) == first
    clock.now += timedelta(seconds=1)  # 60 s left: the next one is minted
    second = held.current(b"s1", ANA)
    assert second != first
    claims = jwt.decode(second, options={"verify_signature": False})
    assert claims["exp"] == int(start.timestamp()) + 240 + 300
    assert held.current(b"s2", ANA) != second  # another session, another token


def test_a_changed_role_or_grant_gets_a_new_token_at_once() -> None:
    clock = Clock()
    held = tokens(clock)
    before = held.current(b"s1", ANA)
    promoted = Principal(
        subject="u_ana", kind=PrincipalKind.PERSON, role=Role.MANAGER, scopes=ROLE_SCOPES[Role.MANAGER]
    )
    after = held.current(b"s1", promoted)
    assert after != before and verifier(clock).verify(after).role is Role.MANAGER


def test_forgotten_sessions_and_the_oldest_beyond_the_bound_are_dropped() -> None:
    clock = Clock()
    held = tokens(clock, max_sessions=2)
    a = held.current(b"a", ANA)
    held.current(b"b", ANA)
    held.current(b"c", ANA)  # pushes a out
    assert held.current(b"a", ANA) != a
    c = held.current(b"c", ANA)
    held.forget(b"c")
    assert held.current(b"c", ANA) != c


class Caller:
    session_key = b"s1"
    principal = ANA


async def test_the_api_client_carries_the_token_and_encodes_path_ids() -> None:
    clock = Clock()
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.startswith("/v1/customers/"):
            return httpx.Response(
                404, json={"title": "Not Found", "status": 404, "detail": "no such customer"}
            )
        return httpx.Response(200, json={"score": 70.0})

    urls = ServiceUrls("http://c", "http://scorer:8001", "http://actions:8002", "http://n")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        api = ApiClient(http=http, urls=urls, tokens=tokens(clock)).on_behalf_of(Caller())
        assert await api.get_json("scorer", "/v1/scores", params={"segment": ["store:paris-1"]}) == {
            "score": 70.0
        }
        with pytest.raises(ApiError) as refused:
            await api.get_json("actions", "/v1/customers/{customer_id}", path_params={"customer_id": "a/b?c"})
    assert refused.value.status == 404 and refused.value.problem["detail"] == "no such customer"
    first, second = seen
    assert str(first.url) == "http://scorer:8001/v1/scores?segment=store%3Aparis-1"
    assert second.url.raw_path == b"/v1/customers/a%2Fb%3Fc"
    bearer = first.headers["authorization"].removeprefix("Bearer ")
    assert verifier(clock).verify(bearer) == ANA


async def test_an_unreachable_service_is_a_503_api_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    urls = ServiceUrls("http://c", "http://s", "http://a", "http://n")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        api = ApiClient(http=http, urls=urls, tokens=tokens(Clock())).on_behalf_of(Caller())
        with pytest.raises(ApiError) as caught:
            await api.get_json("notifier", "/v1/outbox")
    assert caught.value.status == 503 and caught.value.service == "notifier"
