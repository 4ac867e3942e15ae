"""Who is at the keyboard: the session behind the cookie, the role check of every page, CSRF on every POST.

Pages declare ``person = deps.gate.person(Scope.SCORES_READ)`` as a default value (as with
``Authenticator.require``): the dependency returns a ``SignedIn`` or sends the browser to the sign-in
page (no usable session) or answers a 403 page (a role without that scope). POST routes also declare
``deps.gate.csrf``: the token comes from the form field ``csrf_token`` or the ``X-CSRF-Token`` header
(htmx sends it from the ``hx-headers`` of ``<body>``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from fastapi import Request, Response

from services.console.sessions import (
    CookieNames,
    CsrfTokens,
    SessionPolicy,
    SessionState,
    new_pre_session,
    pre_session_binding,
    session_binding,
)
from services.console.web import PageError, SignInRequired, forbidden, route_of
from shared.identity.apitokens import generate_session, session_hash
from shared.identity.ports import IdentityStore, Session, User
from shared.identity.principal import Principal
from shared.identity.scopes import Scope

log = structlog.get_logger(__name__)

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The person behind this request's session, as the routes and ``ApiClient`` use it."""

    user: User
    principal: Principal
    session_key: bytes  # the session's stored hash: keys the CSRF token and the access-token cache
    session: Session
    csrf: str


class CsrfRefused(PageError):
    def __init__(self) -> None:
        super().__init__(403, "error.csrf_title", "error.csrf")


class SessionGate:
    """Reads, starts and ends sessions through the identity store; built once by ``bootstrap``."""

    def __init__(
        self,
        *,
        store: IdentityStore,
        policy: SessionPolicy,
        csrf: CsrfTokens,
        cookies: CookieNames,
        secure: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.policy = policy
        self.tokens = csrf
        self.cookies = cookies
        self.secure = secure
        self.clock = clock

    # ---- reading ----------------------------------------------------------------------------------
    async def signed_in(self, request: Request) -> SignedIn | None:
        """The active session's person (looked up once per request), or None."""
        if hasattr(request.state, "person"):
            found: SignedIn | None = request.state.person
            return found
        person = await self._load(request)
        request.state.person = person
        return person

    async def _load(self, request: Request) -> SignedIn | None:
        raw = request.cookies.get(self.cookies.session)
        key = session_hash(raw) if raw else None
        if key is None:
            return None
        session = await self.store.session_by_hash(session_hash=key)
        if session is None:
            return None
        now = self.clock()
        state = self.policy.state(session, now)
        if state is not SessionState.ACTIVE:
            if state is not SessionState.ENDED:  # idle or too old: ended for good, not revivable
                await self.store.end_session(session_hash=key, at=now)
            request.state.session_notice = "session_ended"
            return None
        user = await self.store.get_user(user_id=session.user_id)
        if user is None or user.disabled:
            return None
        if self.policy.needs_touch(session, now):
            await self.store.touch_session(session_hash=key, at=now)
        csrf = self.tokens.token(session_binding(key))
        return SignedIn(user=user, principal=user.principal(), session_key=key, session=session, csrf=csrf)

    def person(self, *scopes: Scope) -> Callable[[Request], Awaitable[SignedIn]]:
        """A dependency: the signed-in person holding every scope in ``scopes``."""
        needed = frozenset(scopes)

        async def dependency(request: Request) -> SignedIn:
            person = await self.signed_in(request)
            if person is None:
                notice = getattr(request.state, "session_notice", None)
                raise SignInRequired(_here(request), notice=notice)
            if person.principal.missing(needed):
                log.info("page_forbidden", principal=person.principal.log_name, route=route_of(request))
                raise forbidden()
            return person

        return dependency

    # ---- CSRF -------------------------------------------------------------------------------------
    def csrf_token(self, request: Request) -> str:
        """The token forms and htmx carry: bound to the session, or before sign-in to a pre-session."""
        person = getattr(request.state, "person", None)
        if isinstance(person, SignedIn):
            return person.csrf
        binding = pre_session_binding(request.cookies.get(self.cookies.pre_session))
        if binding is None:
            fresh = getattr(request.state, "new_pre_session", None) or new_pre_session()
            request.state.new_pre_session = fresh
            binding = pre_session_binding(fresh)
            assert binding is not None
        return self.tokens.token(binding)

    def finish(self, request: Request, response: Response) -> None:
        """Set the pre-session cookie a rendered form's token was bound to, if it is new."""
        fresh = getattr(request.state, "new_pre_session", None)
        if fresh:
            self._cookie(response, self.cookies.pre_session, fresh, max_age=12 * 3600)

    async def csrf(self, request: Request) -> None:
        """A dependency of every POST: refuses (403 page) a missing or foreign token."""
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            field = (await request.form()).get(CSRF_FIELD)
            presented = field if isinstance(field, str) else None
        bindings = [pre_session_binding(request.cookies.get(self.cookies.pre_session))]
        person = await self.signed_in(request)
        if person is not None:
            bindings.append(session_binding(person.session_key))
        if not any(b is not None and self.tokens.valid(b, presented) for b in bindings):
            log.info("csrf_refused", route=route_of(request))
            raise CsrfRefused()

    # ---- starting and ending ----------------------------------------------------------------------
    async def start(self, request: Request, response: Response, *, user: User) -> None:
        """A new session (a new secret: an attacker's planted cookie never becomes a signed-in one);
        a session this browser still had ends, so signing in again leaves one behind, not two."""
        now = self.clock()
        previous = await self.signed_in(request)
        if previous is not None:
            await self.store.end_session(session_hash=previous.session_key, at=now)
        new = generate_session()
        expires = self.policy.expires_at(now)
        await self.store.create_session(
            session_hash=new.session_hash, user_id=user.user_id, created_at=now, expires_at=expires
        )
        self._cookie(response, self.cookies.session, new.secret, max_age=int((expires - now).total_seconds()))
        response.delete_cookie(self.cookies.pre_session, path="/", secure=self.secure, httponly=True)

    async def end(self, request: Request, response: Response) -> SignedIn | None:
        """Sign-out: the stored session ends (the cookie alone would not do), the cookie goes."""
        person = await self.signed_in(request)
        if person is not None:
            await self.store.end_session(session_hash=person.session_key, at=self.clock())
        response.delete_cookie(self.cookies.session, path="/", secure=self.secure, httponly=True)
        return person

    def _cookie(self, response: Response, name: str, value: str, *, max_age: int) -> None:
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="lax"
        )


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")
