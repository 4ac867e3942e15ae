"""The console on the real PostgreSQL: sessions, CSRF, sign-out, expiry, one-time links, the identity API.

The app runs in-process (httpx over ASGI, https base URL so the Secure ``__Host-`` cookies are sent
back as a browser would); people, sessions, links and the audit log are in a migrated database of its own.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from services.console.bootstrap import create_app
from services.console.people import issue_sign_in_link
from services.console.repository import PgConsoleStore
from services.console.settings import ConsoleSettings
from shared.db import make_engine
from shared.identity.accounts import TokenRequest, create_api_token
from shared.identity.passwords import Passwords
from shared.identity.ports import AuditAction, AuditOutcome, AuditQuery, NewUser, User
from shared.identity.principal import SegmentGrant
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Role, Scope
from tests.helpers import make_settings

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"
CHEAP = Passwords(time_cost=1, memory_cost=1024, parallelism=1)
HTML = {"accept": "text/html"}


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Console:
    app: FastAPI
    client: httpx.AsyncClient
    identity: PgIdentityStore
    links: PgConsoleStore
    clock: Clock

    def browser(self) -> httpx.AsyncClient:
        """Another browser (its own cookie jar) on the same app."""
        transport = httpx.ASGITransport(app=self.app, client=("192.0.2.11", 50000))
        return httpx.AsyncClient(transport=transport, base_url="https://console.test")

    async def person(
        self, email: str, role: Role, *, segments: frozenset[SegmentGrant] | None = None
    ) -> User:
        return await self.identity.create_user(
            user=NewUser(
                email=email,
                display_name=email.split("@")[0].title(),
                role=role,
                segments=segments,
                password_hash=CHEAP.hash(PASSWORD),
            )
        )

    async def audit(self, action: AuditAction) -> list[tuple[str, AuditOutcome, str | None]]:
        records = await self.identity.read_audit(query=AuditQuery(action=action))
        return [(r.entry.actor, r.entry.outcome, r.entry.source_ip) for r in records]


@pytest.fixture
async def console(database_url: str) -> AsyncIterator[Console]:
    clock = Clock()
    cfg = make_settings(ConsoleSettings, environment="test", database_url=database_url)
    app = create_app(cfg, passwords=CHEAP, clock=clock)
    engine = make_engine(database_url)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="https://console.test") as client:
                yield Console(
                    app=app,
                    client=client,
                    identity=PgIdentityStore(engine=engine, timeout_s=5),
                    links=PgConsoleStore(engine=engine, timeout_s=5),
                    clock=clock,
                )
    finally:
        await engine.dispose()


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert found, page.text[:500]
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    form = await client.get("/signin")
    return await client.post(
        "/signin", data={"email": email, "password": password, "csrf_token": csrf_of(form), "next": "/"}
    )


# ---- sessions ----------------------------------------------------------------------------------------
async def test_local_sign_in_sets_a_host_only_session_cookie_and_shows_the_role(console: Console) -> None:
    ana = await console.person("ana@example.com", Role.MANAGER)
    answer = await sign_in(console.client, "Ana@Example.com")
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("__Host-csat_session="))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    home = await console.client.get("/")
    assert home.status_code == 200 and 'data-role="manager"' in home.text and "Manager" in home.text
    first = console.client.cookies.get("__Host-csat_session")
    # signed in again in the same browser (a one-time link: the sign-in page sends a signed-in person home)
    link = await issue_sign_in_link(
        links=console.links, user=ana, created_by="test", at=console.clock.now, ttl=timedelta(minutes=5)
    )
    confirm = await console.client.get(f"/auth/link/{link.secret}")
    again = await console.client.post(f"/auth/link/{link.secret}", data={"csrf_token": csrf_of(confirm)})
    assert again.status_code == 303
    assert console.client.cookies.get("__Host-csat_session") != first
    async with console.identity.engine.connect() as conn:
        ended = (
            await conn.execute(
                text("SELECT count(*) FILTER (WHERE ended_at IS NULL), count(*) FROM identity.sessions")
            )
        ).one()
    assert tuple(ended) == (1, 2)  # the first session ended, not left behind
    assert home.headers["cache-control"] == "no-store"
    csp = home.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert home.headers["x-content-type-options"] == "nosniff"
    signed_in = (f"person:{ana.user_id}", AuditOutcome.OK, "192.0.2.10")
    assert await console.audit(AuditAction.SIGN_IN) == [signed_in, signed_in]  # password, then link


async def test_a_refused_sign_in_says_the_same_whatever_the_reason(console: Console) -> None:
    await console.person("bo@example.com", Role.VIEWER)
    wrong = await sign_in(console.client, "bo@example.com", "not the password!")
    unknown = await sign_in(console.client, "nobody@example.com")
    for answer in (wrong, unknown):
        assert answer.status_code == 401 and "__Host-csat_session" not in answer.headers.get("set-cookie", "")
        assert "The email address or password is not right" in answer.text
    actors = [(actor, outcome) for actor, outcome, _ in await console.audit(AuditAction.SIGN_IN)]
    assert actors[0] == ("anonymous", AuditOutcome.DENIED) and actors[1][1] is AuditOutcome.DENIED
    assert (await console.client.get("/", headers=HTML)).status_code == 303


async def test_posts_without_the_right_csrf_token_change_nothing(console: Console) -> None:
    await console.person("ana@example.com", Role.ADMIN)
    target = await console.person("bo@example.com", Role.VIEWER)
    # no token, then a token of another browser's pre-session: no session either way
    blank = await console.client.post("/signin", data={"email": "ana@example.com", "password": PASSWORD})
    async with console.browser() as other:
        foreign = csrf_of(await other.get("/signin"))
    forged = await console.client.post(
        "/signin", data={"email": "ana@example.com", "password": PASSWORD, "csrf_token": foreign}
    )
    for answer in (blank, forged):
        assert answer.status_code == 403 and "This form has expired" in answer.text
    assert await console.audit(AuditAction.SIGN_IN) == []
    assert (await sign_in(console.client, "ana@example.com")).status_code == 303
    # signed in: a POST without token (a cross-site form) is refused, with the token it works
    assert (
        await console.client.post(f"/admin/people/{target.user_id}", data={"action": "disable"})
    ).status_code == 403
    assert not (await console.identity.get_user(user_id=target.user_id)).disabled  # type: ignore[union-attr]
    token = csrf_of(await console.client.get("/admin/people"))
    htmx = await console.client.post(
        f"/admin/people/{target.user_id}",
        data={"action": "disable"},
        headers={"X-CSRF-Token": token, "HX-Request": "true"},
    )
    assert htmx.status_code == 200 and htmx.text.lstrip().startswith(f'<tr id="person-{target.user_id}"')
    assert (await console.identity.get_user(user_id=target.user_id)).disabled  # type: ignore[union-attr]
    # the token of the pre-session does not outlive the sign-in that replaced it
    assert (await console.client.post("/auth/sign-out", data={"csrf_token": foreign})).status_code == 403


async def test_sign_out_ends_the_session_on_the_server(console: Console) -> None:
    await console.person("ana@example.com", Role.VIEWER)
    await sign_in(console.client, "ana@example.com")
    stolen = console.client.cookies.get("__Host-csat_session")
    token = csrf_of(await console.client.get("/"))
    out = await console.client.post("/auth/sign-out", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/signin?notice=signed_out"
    assert "You are signed out." in (await console.client.get(out.headers["location"])).text
    async with console.browser() as thief:  # the old cookie, replayed, opens nothing
        thief.cookies.set("__Host-csat_session", stolen or "", domain="console.test")
        replay = await thief.get("/", headers=HTML)
    assert replay.status_code == 303 and replay.headers["location"].startswith("/signin")
    assert [o for _, o, _ in await console.audit(AuditAction.SIGN_OUT)] == [AuditOutcome.OK]


async def test_idle_and_old_sessions_end(console: Console) -> None:
    await console.person("ana@example.com", Role.VIEWER)
    await sign_in(console.client, "ana@example.com")
    console.clock.now += timedelta(minutes=29)
    assert (await console.client.get("/")).status_code == 200  # activity: the idle clock restarts
    console.clock.now += timedelta(minutes=29)
    assert (await console.client.get("/")).status_code == 200
    console.clock.now += timedelta(minutes=31)
    idle = await console.client.get("/", headers=HTML)
    assert idle.status_code == 303 and "notice=session_ended" in idle.headers["location"]
    console.clock.now += timedelta(seconds=1)
    assert (await console.client.get("/", headers=HTML)).status_code == 303  # ended for good
    # a session kept busy still ends after its lifetime (8 h)
    await sign_in(console.client, "ana@example.com")
    for _ in range(17):
        console.clock.now += timedelta(minutes=28)
        assert (await console.client.get("/")).status_code == 200
    console.clock.now += timedelta(minutes=28)  # 8 h 24 min after sign-in
    assert (await console.client.get("/", headers=HTML)).status_code == 303


async def test_a_disabled_person_is_signed_out_at_once(console: Console) -> None:
    admin = await console.person("ana@example.com", Role.ADMIN)
    await console.person("bo@example.com", Role.VIEWER)
    async with console.browser() as bo:
        await sign_in(bo, "bo@example.com")
        assert (await bo.get("/")).status_code == 200
        await sign_in(console.client, admin.email)
        token = csrf_of(await console.client.get("/admin/people"))
        bo_id = (await console.identity.user_by_email(email="bo@example.com")).user_id  # type: ignore[union-attr]
        await console.client.post(f"/admin/people/{bo_id}", data={"action": "disable", "csrf_token": token})
        assert (await bo.get("/", headers=HTML)).status_code == 303


async def test_a_page_checks_the_role_server_side(console: Console) -> None:
    await console.person(
        "vi@example.com", Role.VIEWER, segments=frozenset({SegmentGrant.parse("store:paris-1")})
    )
    await sign_in(console.client, "vi@example.com")
    home = await console.client.get("/")
    assert "Segments: store:paris-1" in home.text and 'href="/alerts"' not in home.text
    scores = await console.client.get("/scores")  # the role may: to their store (test_console_scores.py)
    assert scores.status_code == 303 and scores.headers["location"].endswith("segment=store%3Aparis-1")
    for path in ("/alerts", "/rules", "/admin/people"):
        answer = await console.client.get(path, headers=HTML)
        assert answer.status_code == 403 and "Not for your role" in answer.text, path


# ---- one-time links ----------------------------------------------------------------------------------
async def test_a_one_time_link_shows_a_button_and_signs_in_once(console: Console) -> None:
    user = await console.person("ana@example.com", Role.ADMIN)
    link = await issue_sign_in_link(
        links=console.links, user=user, created_by="test", at=console.clock.now, ttl=timedelta(minutes=15)
    )
    url = f"/auth/link/{link.secret}"
    for _ in range(2):  # a mail scanner's GET uses nothing
        page = await console.client.get(url)
        assert page.status_code == 200 and "Sign in as Ana" in page.text
    assert (await console.client.get("/", headers=HTML)).status_code == 303
    used = await console.client.post(url, data={"csrf_token": csrf_of(page)})
    assert used.status_code == 303 and (await console.client.get("/")).status_code == 200
    async with console.browser() as other:
        again = await other.get(url)
        assert again.status_code == 404 and "This link cannot be used" in again.text
        replay = await other.post(url, data={"csrf_token": csrf_of(await other.get("/signin"))})
        assert replay.status_code == 404 and "__Host-csat_session" not in replay.headers.get("set-cookie", "")
    outcomes = [o for _, o, _ in await console.audit(AuditAction.SIGN_IN)]
    assert outcomes == [AuditOutcome.DENIED, AuditOutcome.OK]  # newest first


async def test_an_expired_or_unknown_link_signs_nobody_in(console: Console) -> None:
    user = await console.person("ana@example.com", Role.ADMIN)
    link = await issue_sign_in_link(
        links=console.links, user=user, created_by="test", at=console.clock.now, ttl=timedelta(minutes=15)
    )
    form = await console.client.get(f"/auth/link/{link.secret}")
    console.clock.now += timedelta(minutes=15)
    assert (await console.client.get(f"/auth/link/{link.secret}")).status_code == 404
    late = await console.client.post(f"/auth/link/{link.secret}", data={"csrf_token": csrf_of(form)})
    assert late.status_code == 404
    assert (await console.client.get("/auth/link/" + "A" * 43)).status_code == 404
    assert (await console.client.get("/auth/link/short")).status_code == 404
    async with console.identity.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT link_hash, used_at FROM console.sign_in_links"))).one()
    assert link.secret.encode() not in bytes(stored.link_hash) and stored.used_at is None


# ---- the identity API --------------------------------------------------------------------------------
async def token_with(
    console: Console, admin: User, *scopes: Scope, role: Role = Role.ADMIN
) -> dict[str, str]:
    created = await create_api_token(
        tokens=console.identity,
        users=console.identity,
        audit=console.identity,
        by=admin.principal(),
        request=TokenRequest(name="test", role=role, scopes=frozenset(scopes), expires_at=None),
        service="test",
        at=datetime.now(UTC),
    )
    return {"Authorization": f"Bearer {created.secret}"}


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every route of the JSON API, from the app's OpenAPI document: a new one cannot slip past the test."""
    ids = {"{user_id}": "u_0000000000000000", "{token_id}": "0" * 12}
    out = []
    for path, operations in app.openapi()["paths"].items():
        for name, value in ids.items():
            path = path.replace(name, value)
        out += [(method.upper(), path) for method in operations if path.startswith("/v1/")]
    return out


async def test_every_identity_route_refuses_missing_wrong_and_under_scoped_credentials(
    console: Console,
) -> None:
    admin = await console.person("ana@example.com", Role.ADMIN)
    viewer_token = await token_with(console, admin, Scope.SCORES_READ, role=Role.VIEWER)
    routes = api_routes(console.app)
    assert len(routes) == 11  # users x4, tokens x3, audit, GDPR erase, export and erasure status
    for method, path in routes:
        body: dict[str, str] | None = {} if method in ("POST", "PATCH") else None
        missing = await console.client.request(method, path, json=body)
        wrong = await console.client.request(
            method, path, json=body, headers={"Authorization": "Bearer csat_nope"}
        )
        under = await console.client.request(method, path, json=body, headers=viewer_token)
        for answer, status in ((missing, 401), (wrong, 401), (under, 403)):
            assert answer.status_code == status, (method, path, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert set(answer.json()) <= {"type", "title", "status", "detail"}, answer.text
            assert "ana@example.com" not in answer.text
        assert missing.headers["www-authenticate"] == 'Bearer realm="csat"'
    # a session cookie opens nothing on the API (no CSRF exposure there)
    await sign_in(console.client, "ana@example.com")
    assert (await console.client.get("/v1/users")).status_code == 401
    jwks = await console.client.get("/.well-known/jwks.json")
    assert jwks.status_code == 200 and all("d" not in k for k in jwks.json()["keys"])


async def test_people_and_tokens_through_the_api_are_audited(console: Console) -> None:
    admin = await console.person("ana@example.com", Role.ADMIN)
    headers = await token_with(console, admin, Scope.USERS_ADMIN, Scope.TOKENS_ADMIN, Scope.AUDIT_READ)
    made = await console.client.post(
        "/v1/users",
        json={
            "email": "Cy@Example.com",
            "display_name": "Cy",
            "role": "viewer",
            "segments": ["store:paris-1"],
        },
        headers=headers,
    )
    assert (
        made.status_code == 201
        and made.json()["email"] == "cy@example.com"
        and "password_hash" not in made.text
    )
    user_id = made.json()["user_id"]
    again = {"email": "cy@example.com", "display_name": "Other Cy", "role": "viewer"}
    assert (await console.client.post("/v1/users", json=again, headers=headers)).status_code == 409
    patched = await console.client.patch(
        f"/v1/users/{user_id}", json={"role": "csm", "password": "short"}, headers=headers
    )
    assert patched.status_code == 422  # the password policy, checked before anything changes
    assert (await console.client.get(f"/v1/users/{user_id}", headers=headers)).json()["role"] == "viewer"
    patched = await console.client.patch(
        f"/v1/users/{user_id}", json={"role": "csm", "segments": None, "password": PASSWORD}, headers=headers
    )
    assert (
        patched.json()["role"] == "csm"
        and patched.json()["segments"] is None
        and patched.json()["local_password"]
    )
    issued = await console.client.post(
        "/v1/tokens", json={"name": "bi export", "role": "viewer", "scopes": ["scores:read"]}, headers=headers
    )
    assert issued.status_code == 201 and issued.json()["secret"].startswith("csat_")
    token_id = issued.json()["token"]["token_id"]
    listed = await console.client.get("/v1/tokens", headers=headers)
    assert issued.json()["secret"] not in listed.text and token_id in listed.text
    too_much = await console.client.post(
        "/v1/tokens", json={"name": "x", "role": "viewer", "scopes": ["users:admin"]}, headers=headers
    )
    assert too_much.status_code == 403
    assert (await console.client.delete(f"/v1/tokens/{token_id}", headers=headers)).status_code == 204
    assert (await console.client.delete(f"/v1/tokens/{token_id}", headers=headers)).status_code == 404
    audit = (await console.client.get("/v1/audit", params={"limit": 50}, headers=headers)).json()["entries"]
    actions = [e["action"] for e in audit]
    for action in ("user.create", "user.update", "user.password", "token.create", "token.revoke"):
        assert action in actions, actions
    assert all(e["source_ip"] in (None, "192.0.2.10") for e in audit)
    reads = await console.client.get("/v1/audit", params={"action": "audit.read"}, headers=headers)
    assert len(reads.json()["entries"]) == 1  # the read before this one
    assert "cy@example.com" not in reads.text and "Cy@Example.com" not in str(audit)


async def test_refusals_log_the_route_never_the_link_secret(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    user = await console.person("ana@example.com", Role.ADMIN)
    link = await issue_sign_in_link(
        links=console.links, user=user, created_by="test", at=console.clock.now, ttl=timedelta(minutes=15)
    )
    refused = await console.client.post(f"/auth/link/{link.secret}", data={"csrf_token": "0" * 64})
    assert refused.status_code == 403
    logged = caplog.text
    assert "csrf_refused" in logged and "/auth/link/{secret}" in logged and link.secret not in logged
    # still usable: a refused POST used nothing
    page = await console.client.get(f"/auth/link/{link.secret}")
    assert (
        await console.client.post(f"/auth/link/{link.secret}", data={"csrf_token": csrf_of(page)})
    ).status_code == 303
