"""Signing in and out: the sign-in page, local accounts, OpenID Connect, one-time links, sign-out.

Every attempt, accepted or refused, is in the audit log (``session.sign_in`` / ``session.sign_out``);
a refused local sign-in tells the person the same thing whatever the reason.
"""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.people import Method, OidcRefusal, link_hash, match_oidc_person, record_sign_in
from services.console.people import record_sign_out as audit_sign_out
from services.console.sessions import RoundTrip, RoundTripCookie, safe_next
from services.console.web import client_ip
from shared.identity.accounts import sign_in_local
from shared.identity.oidc import OidcError, PendingSignIn
from shared.identity.ports import User
from shared.security.text import text_problem

log = structlog.get_logger(__name__)

NOTICES = {"signed_out": "signin.signed_out", "session_ended": "signin.session_ended"}


class SignIn:
    """The sign-in page, and the two ways every sign-in ends: a session, or an audited refusal."""

    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps

    def page(
        self,
        request: Request,
        *,
        next_path: str,
        status: int = 200,
        error: str | None = None,
        email: str = "",
    ) -> Response:
        deps = self.deps
        return deps.pages.render(
            request,
            "signin.html",
            status=status,
            next_path=next_path,
            error=error,
            notice=NOTICES.get(request.query_params.get("notice", "")),
            email=email,
            oidc=deps.oidc is not None,
            provider=deps.settings.oidc_display_name,
        )

    async def succeed(self, request: Request, *, user: User, next_path: str, method: Method) -> Response:
        response = RedirectResponse(safe_next(next_path), status_code=303)
        await self.deps.gate.start(request, response, user=user)
        await self._record(request, method=method, user=user, ok=True)
        return response

    async def refused(self, request: Request, *, method: Method, user: User | None, reason: str) -> None:
        await self._record(request, method=method, user=user, ok=False, reason=reason)

    async def _record(
        self, request: Request, *, method: Method, user: User | None, ok: bool, reason: str | None = None
    ) -> None:
        deps = self.deps
        await record_sign_in(
            audit=deps.identity,
            at=deps.clock(),
            method=method,
            user=user,
            ok=ok,
            source_ip=client_ip(request, deps.settings.proxy_networks),
            reason=reason,
        )


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(tags=["sign-in"], include_in_schema=False)
    flow = SignIn(deps)
    add_local_routes(r, deps, flow)
    add_oidc_routes(r, deps, flow)
    add_link_routes(r, deps, flow)

    @r.post("/auth/sign-out", dependencies=[Depends(deps.gate.csrf)])
    async def sign_out(request: Request) -> Response:
        response = RedirectResponse("/signin?notice=signed_out", status_code=303)
        person: SignedIn | None = await deps.gate.end(request, response)
        if person is not None:
            deps.tokens.forget(person.session_key)
            await audit_sign_out(
                audit=deps.identity,
                at=deps.clock(),
                user=person.user,
                source_ip=client_ip(request, deps.settings.proxy_networks),
            )
        return response

    return r


def add_local_routes(r: APIRouter, deps: ConsoleDeps, flow: SignIn) -> None:
    @r.get("/signin")
    async def signin_form(request: Request, next: str = "/") -> Response:
        if await deps.gate.signed_in(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return flow.page(request, next_path=safe_next(next))

    @r.post("/signin", dependencies=[Depends(deps.gate.csrf)])
    async def signin_submit(
        request: Request,
        email: Annotated[str, Form(max_length=320)] = "",
        password: Annotated[str, Form(max_length=2048)] = "",
        next_path: Annotated[str, Form(alias="next", max_length=2000)] = "/",
    ) -> Response:
        usable = not text_problem(email, single_line=True) and not text_problem(password, single_line=True)
        result = await sign_in_local(
            users=deps.identity,
            passwords=deps.passwords,
            email=email if usable else "",
            password=password,
            now=deps.clock(),
        )
        if result.user is not None:
            return await flow.succeed(request, user=result.user, next_path=next_path, method=Method.PASSWORD)
        failed = await deps.identity.user_by_email(email=email) if usable and email else None
        reason = result.failure.value if result.failure else "invalid"
        await flow.refused(request, method=Method.PASSWORD, user=failed, reason=reason)
        return flow.page(
            request,
            next_path=safe_next(next_path),
            status=401,
            error="signin.failed",
            email=email if usable else "",
        )


def add_oidc_routes(r: APIRouter, deps: ConsoleDeps, flow: SignIn) -> None:
    """Authorization code with PKCE: the round trip is kept in a signed cookie of this browser."""
    trips = RoundTripCookie(key=deps.settings.session_key)

    @r.get("/auth/oidc/start")
    async def oidc_start(request: Request, next: str = "/") -> Response:
        if deps.oidc is None:
            return flow.page(request, next_path=safe_next(next), status=404)
        try:
            start = await deps.oidc.begin()
        except OidcError as exc:
            log.warning("oidc_start_failed", reason=str(exc))
            return flow.page(request, next_path=safe_next(next), status=503, error="signin.oidc_unavailable")
        p = start.pending
        trip = RoundTrip(p.state, p.nonce, p.code_verifier, p.created_at, safe_next(next))
        response = RedirectResponse(start.url, status_code=303)
        response.set_cookie(
            deps.gate.cookies.oidc,
            trips.dump(trip),
            max_age=int(trips.max_age.total_seconds()),
            path="/",
            secure=deps.gate.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    @r.get("/auth/oidc/callback")
    async def oidc_callback(request: Request, code: str = "", state: str = "") -> Response:
        trip = trips.load(request.cookies.get(deps.gate.cookies.oidc))
        if deps.oidc is None or trip is None or not code:
            log.info("oidc_callback_refused", reason="no round trip or code")
            return flow.page(request, next_path="/", status=400, error="signin.oidc_failed")
        pending = PendingSignIn(trip.state, trip.nonce, trip.code_verifier, trip.created_at)
        try:
            identity = await deps.oidc.finish(pending=pending, code=code, state=state)
        except OidcError as exc:
            log.info("oidc_callback_refused", reason=str(exc))
            return flow.page(request, next_path=trip.next_path, status=400, error="signin.oidc_failed")
        match = await match_oidc_person(users=deps.identity, links=deps.console, identity=identity)
        if match.user is None or match.refusal is not None:
            reason = (match.refusal or OidcRefusal.UNKNOWN).value
            await flow.refused(request, method=Method.OIDC, user=match.user, reason=reason)
            response = flow.page(request, next_path=trip.next_path, status=403, error="signin.oidc_unknown")
        else:
            response = await flow.succeed(
                request, user=match.user, next_path=trip.next_path, method=Method.OIDC
            )
        response.delete_cookie(deps.gate.cookies.oidc, path="/", secure=deps.gate.secure, httponly=True)
        return response


def add_link_routes(r: APIRouter, deps: ConsoleDeps, flow: SignIn) -> None:
    """One-time links: the GET only shows a button (mail scanners fetch links), the POST signs in."""

    def invalid(request: Request) -> Response:
        return deps.pages.render(request, "link.html", status=404, usable=False)

    @r.get("/auth/link/{secret}")
    async def link_page(request: Request, secret: str) -> Response:
        key = link_hash(secret)
        link = await deps.console.link_by_hash(link_hash=key) if key else None
        if link is None or not link.usable(deps.clock()):
            return invalid(request)
        user = await deps.identity.get_user(user_id=link.user_id)
        if user is None or user.disabled:
            return invalid(request)
        return deps.pages.render(
            request, "link.html", usable=True, name=user.display_name, until=link.expires_at
        )

    @r.post("/auth/link/{secret}", dependencies=[Depends(deps.gate.csrf)])
    async def link_use(request: Request, secret: str) -> Response:
        key = link_hash(secret)
        user_id = await deps.console.use_link(link_hash=key, at=deps.clock()) if key else None
        user = await deps.identity.get_user(user_id=user_id) if user_id else None
        if user is None or user.disabled:
            reason = "disabled" if user else "link_unusable"
            await flow.refused(request, method=Method.LINK, user=user, reason=reason)
            return invalid(request)
        return await flow.succeed(request, user=user, next_path="/", method=Method.LINK)
