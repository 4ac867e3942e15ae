"""Short-lived signed access tokens: how a person's console session calls the other services.

The console signs a JWT (RFC 9068 profile: header ``typ: at+jwt``) with an Ed25519 key (``EdDSA``)
carrying the person's role, scopes, segment grants and owned accounts, valid a few minutes. Every
service verifies it offline against the public keys in its settings (a JWKS, selected by ``kid``),
so no request waits on another service; rotation = publish the new public key everywhere, switch the
console's signing key, drop the old public key once the longest token signed with it has expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from shared.identity.principal import Principal, PrincipalKind, grant_texts, parse_grants
from shared.identity.scopes import ROLE_SCOPES, Role, Scope

ALGORITHM = "EdDSA"
TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 header value, not a secret

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InvalidAccessToken(ValueError):
    """Not a token this platform signed for this audience, or no longer valid; the reason is for logs."""


class InvalidKey(ValueError):
    """A signing or public key that cannot be read."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def thumbprint(public_jwk: Mapping[str, Any]) -> str:
    """RFC 7638 JWK thumbprint of an OKP key: the natural, collision-free ``kid``."""
    canonical = json.dumps(
        {"crv": public_jwk["crv"], "kty": public_jwk["kty"], "x": public_jwk["x"]},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The console's private key and its ``kid``. Serialised as a private JWK (the secret setting)."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        key = Ed25519PrivateKey.generate()
        public = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
        return cls(kid=thumbprint(public), private_key=key)

    @classmethod
    def from_jwk(cls, text: str) -> SigningKey:
        try:
            data = json.loads(text)
            key = OKPAlgorithm.from_jwk(data)
        except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
            raise InvalidKey(
                f"the signing key is not an Ed25519 private JWK ({type(exc).__name__})"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InvalidKey("the signing key is not an Ed25519 private JWK")
        kid = data.get("kid") or thumbprint(json.loads(OKPAlgorithm.to_jwk(key.public_key())))
        return cls(kid=str(kid), private_key=key)

    def private_jwk(self) -> str:
        data = json.loads(OKPAlgorithm.to_jwk(self.private_key))
        return json.dumps({**data, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}, sort_keys=True)

    def public_jwk(self) -> dict[str, Any]:
        data = json.loads(OKPAlgorithm.to_jwk(self.private_key.public_key()))
        return {**data, "kid": self.kid, "alg": ALGORITHM, "use": "sig"}


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Public keys every service trusts, by ``kid`` (the settings' JWKS)."""

    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    @classmethod
    def from_jwks(cls, document: str | Mapping[str, Any]) -> KeyRing:
        data = json.loads(document) if isinstance(document, str) else document
        items = data.get("keys") if isinstance(data, Mapping) else None
        if not isinstance(items, list):
            raise InvalidKey('the public keys must be a JWKS: {"keys": [...]}')
        keys: dict[str, Ed25519PublicKey] = {}
        for item in items:
            try:
                key = OKPAlgorithm.from_jwk(item)
            except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
                raise InvalidKey(f"a public key is not an Ed25519 JWK ({type(exc).__name__})") from None
            if isinstance(key, Ed25519PrivateKey):
                raise InvalidKey("the public key set holds a private key: publish only public keys")
            if not isinstance(key, Ed25519PublicKey) or not item.get("kid"):
                raise InvalidKey("every public key needs a kid and must be Ed25519")
            keys[str(item["kid"])] = key
        return cls(keys=keys)

    @classmethod
    def of(cls, signing_keys: Iterable[SigningKey]) -> KeyRing:
        return cls(keys={k.kid: k.private_key.public_key() for k in signing_keys})

    def to_jwks(self) -> dict[str, Any]:
        return {
            "keys": [
                {**json.loads(OKPAlgorithm.to_jwk(key)), "kid": kid, "alg": ALGORITHM, "use": "sig"}
                for kid, key in sorted(self.keys.items())
            ]
        }


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


class AccessTokenIssuer:
    """The console's side: one token per person per few minutes, refreshed from the session."""

    def __init__(
        self, *, key: SigningKey, issuer: str, audience: str, ttl_s: int = 300, clock: Clock = _utcnow
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl = timedelta(seconds=ttl_s)
        self._clock = clock

    def mint(self, principal: Principal) -> IssuedToken:
        if principal.kind is not PrincipalKind.PERSON or principal.role is None:
            raise ValueError("access tokens are minted for people only")
        now = self._clock().replace(microsecond=0)
        expires = now + self.ttl
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": principal.subject,
            "iat": now,
            "nbf": now,
            "exp": expires,
            "jti": secrets.token_urlsafe(12),
            "role": principal.role.value,
            "scope": " ".join(sorted(s.value for s in principal.scopes)),
            "acc": sorted(principal.accounts),
        }
        segments = grant_texts(principal.segments)
        if segments is not None:
            claims["seg"] = segments
        if principal.owner_email:
            claims["own"] = principal.owner_email
        token = jwt.encode(
            claims,
            self.key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self.key.kid, "typ": TOKEN_TYPE},
        )
        return IssuedToken(token=token, expires_at=expires)


class AccessTokenVerifier:
    """Every service's side: signature, ``kid``, type, issuer, audience, times; then the principal.

    Scopes are intersected with the claimed role's (a token never gives more than its role), and
    scope names this version does not know are dropped, so a newer console can roll out first.
    """

    def __init__(
        self,
        *,
        keys: KeyRing,
        issuer: str,
        audience: str,
        leeway_s: int = 30,
        max_ttl_s: int = 900,
        clock: Clock = _utcnow,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.max_ttl_s = max_ttl_s
        self._clock = clock

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidAccessToken("not a JWT") from None
        if header.get("alg") != ALGORITHM or header.get("typ") != TOKEN_TYPE:
            raise InvalidAccessToken("not an EdDSA access token (alg/typ)")
        key = self.keys.keys.get(str(header.get("kid")))
        if key is None:
            raise InvalidAccessToken("signed with an unknown key (kid)")
        claims = self._decode(token, key)
        if int(claims["exp"]) - int(claims["iat"]) > self.max_ttl_s:
            raise InvalidAccessToken("lifetime longer than accepted")
        return _principal(claims)

    def _decode(self, token: str, key: Ed25519PublicKey) -> dict[str, Any]:
        now = self._clock()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "nbf", "sub", "iss", "aud", "jti"], "verify_iat": True},
            )
        except jwt.PyJWTError as exc:
            raise InvalidAccessToken(type(exc).__name__) from None
        # PyJWT checks times against the system clock; the injected clock is checked as well (tests, skew).
        if int(claims["exp"]) + self.leeway_s <= now.timestamp():
            raise InvalidAccessToken("ExpiredSignatureError")
        if int(claims["nbf"]) - self.leeway_s > now.timestamp():
            raise InvalidAccessToken("ImmatureSignatureError")
        return claims


def _principal(claims: Mapping[str, Any]) -> Principal:
    try:
        role = Role(str(claims["role"]))
        named = str(claims.get("scope", "")).split()
        scopes = frozenset(Scope(n) for n in named if n in Scope._value2member_map_) & ROLE_SCOPES[role]
        segments = parse_grants(claims["seg"]) if "seg" in claims else None
        accounts = frozenset(str(a) for a in claims.get("acc", []))
        owner = claims.get("own")
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidAccessToken(f"malformed claims ({type(exc).__name__})") from None
    return Principal(
        subject=str(claims["sub"]),
        kind=PrincipalKind.PERSON,
        role=role,
        scopes=scopes,
        segments=segments,
        accounts=accounts,
        owner_email=str(owner) if owner else None,
    )
