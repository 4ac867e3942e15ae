"""Credentials for tests of routes that need one: the dev bootstrap key (a full admin outside prod) and
console access tokens for people of any role, signed with one key the services under test trust.

A service app gets the public half through its settings (``identity_public_keys=JWKS``); unit tests
that build a router by hand use ``authenticator()``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping

from shared.identity.accesstokens import AccessTokenIssuer, AccessTokenVerifier, KeyRing, SigningKey
from shared.identity.guard import Authenticator
from shared.identity.keygen import production_secrets
from shared.identity.principal import Principal, PrincipalKind, SegmentGrant
from shared.identity.scopes import ROLE_SCOPES, Role, Scope
from shared.identity.wiring import bootstrap_scopes
from shared.settings import DEV_ADMIN_KEY

ISSUER, AUDIENCE = "csat-console", "csat-api"
#: One signing key per test session; ``JWKS`` is what a service's ``identity_public_keys`` takes.
SIGNING_KEY = SigningKey.generate()
JWKS = json.dumps(KeyRing.of([SIGNING_KEY]).to_jwks())
#: The dev bootstrap key: every admin scope in dev and test.
ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}


def person(
    role: Role,
    *,
    subject: str = "u-test",
    segments: Iterable[str] | None = None,
    accounts: Iterable[str] = (),
    owner_email: str | None = None,
    scopes: Iterable[Scope] | None = None,
) -> Principal:
    """A signed-in person as the console's access token describes them."""
    return Principal(
        subject=subject,
        kind=PrincipalKind.PERSON,
        role=role,
        scopes=frozenset(scopes) if scopes is not None else ROLE_SCOPES[role],
        segments=None if segments is None else frozenset(SegmentGrant.parse(s) for s in segments),
        accounts=frozenset(accounts),
        owner_email=owner_email,
    )


def access_token(principal: Principal, *, key: SigningKey = SIGNING_KEY) -> str:
    return AccessTokenIssuer(key=key, issuer=ISSUER, audience=AUDIENCE).mint(principal).token


def bearer(principal: Principal, *, key: SigningKey = SIGNING_KEY) -> dict[str, str]:
    """The ``Authorization`` header of this person's access token."""
    return {"Authorization": f"Bearer {access_token(principal, key=key)}"}


class FreshBearer(Mapping[str, str]):
    """An ``Authorization`` header minted anew each time it is read, for headers kept at module level.

    An access token lives 5 minutes and the services refuse longer-lived ones (``max_ttl_s``); a
    token minted when a test module is imported has expired by the time a test runs late in a
    long session under load (one CI run: ``ExpiredSignatureError`` in a test eight minutes in).
    httpx reads a mapping's items when it builds each request, so every request gets a fresh token.
    """

    def __init__(self, principal: Principal, *, key: SigningKey = SIGNING_KEY) -> None:
        self._principal = principal
        self._key = key

    def __getitem__(self, name: str) -> str:
        if name != "Authorization":
            raise KeyError(name)
        return f"Bearer {access_token(self._principal, key=self._key)}"

    def __iter__(self) -> Iterator[str]:
        return iter(("Authorization",))

    def __len__(self) -> int:
        return 1


def authenticator(service: str = "test", *, environment: str = "test") -> Authenticator:
    """What a service's bootstrap builds, without a token store: the dev key and people's tokens."""
    return Authenticator(
        service=service,
        access=AccessTokenVerifier(keys=KeyRing.of([SIGNING_KEY]), issuer=ISSUER, audience=AUDIENCE),
        bootstrap_key=DEV_ADMIN_KEY,
        bootstrap_scopes=bootstrap_scopes(environment),
    )


def prod_secrets() -> dict[str, str]:
    """``python -m shared.identity.keygen``'s output as settings field names (what prod needs)."""
    return {name.removeprefix("CSAT_").lower(): value for name, value in production_secrets().items()}
