"""Access tokens a signed-in person's requests carry to the other services (pure).

One token per session, minted by ``AccessTokenIssuer`` (5 minutes by default) and replaced when fewer
than ``refresh_before`` remain, or at once when the person's role, scopes or grants changed (the
session reloads the person on every request). Kept in memory per replica: a token is cheap to mint
(one Ed25519 signature) and losing the cache on restart only means minting again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.identity.accesstokens import AccessTokenIssuer, IssuedToken
from shared.identity.principal import Principal


@dataclass(frozen=True, slots=True)
class _Held:
    principal: Principal
    issued: IssuedToken


class AccessTokens:
    """``current(session_key, principal)`` -> a bearer token valid at least ``refresh_before`` longer."""

    def __init__(
        self,
        *,
        issuer: AccessTokenIssuer,
        clock: Callable[[], datetime],
        refresh_before: timedelta = timedelta(seconds=60),
        max_sessions: int = 10_000,
    ) -> None:
        self.issuer = issuer
        self._clock = clock
        self.refresh_before = refresh_before
        self.max_sessions = max_sessions
        self._held: OrderedDict[bytes, _Held] = OrderedDict()

    def current(self, session_key: bytes, principal: Principal) -> str:
        held = self._held.get(session_key)
        now = self._clock()
        if held is None or held.principal != principal or held.issued.expires_at - now < self.refresh_before:
            held = _Held(principal=principal, issued=self.issuer.mint(principal))
            self._held[session_key] = held
        self._held.move_to_end(session_key)
        while len(self._held) > self.max_sessions:
            self._held.popitem(last=False)
        return held.issued.token

    def forget(self, session_key: bytes) -> None:
        """At sign-out: this replica stops handing the token out (it expires by itself elsewhere)."""
        self._held.pop(session_key, None)
