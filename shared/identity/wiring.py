"""How a service's composition root builds its ``Authenticator`` from its settings (one way for all).

Credentials accepted: API tokens (``identity.api_tokens`` through the given ``TokenLookup``), console
access tokens (``CSAT_IDENTITY_PUBLIC_KEYS``), source keys (the collector's ``sources``) and the
bootstrap admin key (``CSAT_BOOTSTRAP_ADMIN_KEY``, or ``CSAT_ADMIN_API_KEY`` as before; ``dev-admin-key``
in dev and test when neither is set). Outside prod the bootstrap key is a full admin credential, so
``make run``, scripts and tests keep one key for everything; in prod it only creates the first people
and tokens (``BOOTSTRAP_SCOPES``), as docs/security.md describes.
"""

from __future__ import annotations

from shared.identity.config import IdentitySettings
from shared.identity.guard import Authenticator, SourceResolver
from shared.identity.ports import TokenLookup
from shared.identity.scopes import BOOTSTRAP_SCOPES, ROLE_SCOPES, Role, Scope
from shared.settings import DEV_ADMIN_KEY


def bootstrap_scopes(environment: str) -> frozenset[Scope]:
    """What the bootstrap key may do in this environment: everything an admin may outside prod."""
    return BOOTSTRAP_SCOPES if environment == "prod" else ROLE_SCOPES[Role.ADMIN]


def bootstrap_key(identity: IdentitySettings, environment: str) -> str | None:
    """The configured key (empty means none); in dev and test ``dev-admin-key`` when none is set."""
    key = identity.bootstrap_admin_key
    value = key.get_secret_value().strip() if key is not None else ""
    if not value and environment != "prod":
        return DEV_ADMIN_KEY
    return value or None


def service_authenticator(
    *,
    service: str,
    identity: IdentitySettings,
    environment: str,
    tokens: TokenLookup | None,
    sources: SourceResolver | None = None,
) -> Authenticator:
    """The one ``Authenticator`` of a service, started and stopped by its lifespan."""
    return Authenticator(
        service=service,
        tokens=tokens,
        access=identity.access_verifier(),
        sources=sources,
        bootstrap_key=bootstrap_key(identity, environment),
        bootstrap_scopes=bootstrap_scopes(environment),
        cache_s=identity.token_cache_s,
        stale_s=identity.token_cache_stale_s,
        touch_every_s=identity.token_touch_s,
    )
