"""What the console's routes share, built once by ``bootstrap``: stores as ports, the gate, pages, APIs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from services.console.apiclient import ApiClient
from services.console.guard import SessionGate
from services.console.live import LiveHub
from services.console.ports import ConsoleStore, EventSink, IdentityStore
from services.console.settings import ConsoleSettings
from services.console.tokens import AccessTokens
from services.console.web import Pages
from shared.identity.accesstokens import KeyRing
from shared.identity.guard import Authenticator
from shared.identity.oidc import OidcClient
from shared.identity.passwords import Passwords


@dataclass(frozen=True, slots=True)
class ConsoleDeps:
    settings: ConsoleSettings
    identity: IdentityStore  # people, sessions, API tokens, audit log
    console: ConsoleStore  # one-time links, OpenID linking
    passwords: Passwords
    gate: SessionGate  # browser sessions and CSRF (pages)
    auth: Authenticator  # bearer credentials (the JSON identity API)
    pages: Pages
    api: ApiClient  # the other services, on a person's behalf
    tokens: AccessTokens
    jwks: KeyRing  # public keys published at /.well-known/jwks.json
    oidc: OidcClient | None
    live: LiveHub  # open Scores pages, told when a score moves
    clock: Callable[[], datetime]
    events: EventSink  # erasure requests (csat.customers.erased.v1)
