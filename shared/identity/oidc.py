"""OpenID Connect sign-in for the console: authorization code with PKCE, state and nonce.

authlib builds the protocol pieces (random tokens, the S256 code challenge, the authorization URL,
discovery metadata validation); PyJWT verifies the ID token against the provider's JWKS. The console
keeps a ``PendingSignIn`` between ``begin`` and ``finish`` (in a short-lived signed cookie or its
session store) and maps the returned ``OidcIdentity`` (issuer, subject) to a person in
``identity.users``; nobody gets an account merely by signing in.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.discovery import OpenIDProviderMetadata

#: Asymmetric algorithms only: an HMAC-signed ID token would be keyed with the client secret.
ID_TOKEN_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


class OidcError(ValueError):
    """The sign-in cannot be completed; the message is for logs, the person sees a generic one."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class OidcClientConfig:
    issuer: str
    client_id: str
    redirect_uri: str
    client_secret: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    require_https: bool = True


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What must survive the round trip through the provider; never shown to the provider but ``state``."""

    state: str
    nonce: str
    code_verifier: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SignInRedirect:
    url: str
    pending: PendingSignIn


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    issuer: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None


@dataclass
class _Keys:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)


class OidcClient:
    """One configured provider. ``http`` is the console's client (timeouts set there)."""

    def __init__(
        self,
        *,
        config: OidcClientConfig,
        http: httpx.AsyncClient,
        clock: Callable[[], datetime] = _utcnow,
        leeway_s: int = 60,
        pending_ttl: timedelta = timedelta(minutes=10),
    ) -> None:
        if config.require_https and not config.issuer.startswith("https://"):
            raise OidcError("the OpenID issuer must be an https:// URL")
        self.config = config
        self.http = http
        self._clock = clock
        self.leeway_s = leeway_s
        self.pending_ttl = pending_ttl
        self._metadata: ProviderMetadata | None = None
        self._keys = _Keys()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            answer = await self.http.get(url)
            answer.raise_for_status()
            data = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"provider request failed ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise OidcError("provider answered something other than a JSON object")
        return data

    async def metadata(self) -> ProviderMetadata:
        """Discovery, once; the document must name exactly the configured issuer."""
        if self._metadata is None:
            url = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            data = await self._get_json(url)
            try:
                OpenIDProviderMetadata(data).validate()
            except Exception as exc:  # noqa: BLE001 - authlib raises several error types for invalid metadata
                raise OidcError(f"invalid discovery document ({exc})") from None
            if data["issuer"].rstrip("/") != self.config.issuer.rstrip("/"):
                raise OidcError("the discovery document names another issuer")
            self._metadata = ProviderMetadata(
                issuer=data["issuer"],
                authorization_endpoint=data["authorization_endpoint"],
                token_endpoint=data["token_endpoint"],
                jwks_uri=data["jwks_uri"],
                end_session_endpoint=data.get("end_session_endpoint"),
            )
        return self._metadata

    async def begin(self) -> SignInRedirect:
        """The provider URL to send the browser to, and what to keep until it comes back."""
        meta = await self.metadata()
        pending = PendingSignIn(
            state=generate_token(32),
            nonce=generate_token(32),
            code_verifier=generate_token(64),
            created_at=self._clock(),
        )
        url = prepare_grant_uri(
            meta.authorization_endpoint,
            self.config.client_id,
            "code",
            redirect_uri=self.config.redirect_uri,
            scope=" ".join(self.config.scopes),
            state=pending.state,
            nonce=pending.nonce,
            code_challenge=create_s256_code_challenge(pending.code_verifier),
            code_challenge_method="S256",
        )
        return SignInRedirect(url=str(url), pending=pending)

    async def finish(self, *, pending: PendingSignIn, code: str, state: str) -> OidcIdentity:
        """Check ``state``, exchange ``code`` (with the PKCE verifier), verify the ID token and its nonce."""
        if not state or not hmac.compare_digest(state.encode(), pending.state.encode()):
            raise OidcError("state does not match this sign-in")
        if self._clock() - pending.created_at > self.pending_ttl:
            raise OidcError("the sign-in took too long; start again")
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.config.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        try:
            if self.config.client_secret:  # a confidential client authenticates with HTTP Basic
                secret = httpx.BasicAuth(self.config.client_id, self.config.client_secret)
                answer = await self.http.post(meta.token_endpoint, data=form, auth=secret)
            else:  # a public client names itself; PKCE is what binds the code to it
                answer = await self.http.post(
                    meta.token_endpoint, data={**form, "client_id": self.config.client_id}
                )
            answer.raise_for_status()
            tokens = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"token exchange failed ({type(exc).__name__})") from None
        id_token = tokens.get("id_token") if isinstance(tokens, dict) else None
        if not isinstance(id_token, str):
            raise OidcError("the provider returned no ID token")
        claims = await self._verify(id_token, meta)
        nonce = str(claims.get("nonce", ""))
        if not nonce or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
            raise OidcError("nonce does not match this sign-in")
        return OidcIdentity(
            issuer=meta.issuer,
            subject=str(claims["sub"]),
            email=str(claims["email"]).lower() if claims.get("email") else None,
            email_verified=claims.get("email_verified") is True,
            name=str(claims["name"]) if claims.get("name") else None,
        )

    async def _key(self, kid: str | None, meta: ProviderMetadata) -> jwt.PyJWK:
        """The provider's key by ``kid``; an unknown one refetches the JWKS once (the provider rotated).

        A token without ``kid`` is accepted only while the provider publishes a single key, as OpenID
        Connect allows.
        """
        if not self._keys.keys or (kid is not None and kid not in self._keys.keys):
            data = await self._get_json(meta.jwks_uri)
            try:
                found = jwt.PyJWKSet.from_dict(data)
            except jwt.PyJWTError as exc:
                raise OidcError(f"invalid provider JWKS ({type(exc).__name__})") from None
            self._keys.keys = {k.key_id or "": k for k in found.keys}
        if kid is None and len(self._keys.keys) == 1:
            return next(iter(self._keys.keys.values()))
        key = self._keys.keys.get(kid) if kid is not None else None
        if key is None:
            raise OidcError("ID token signed with a key the provider does not publish")
        return key

    async def _verify(self, id_token: str, meta: ProviderMetadata) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcError("the ID token is not a JWT") from None
        alg = header.get("alg")
        if alg not in ID_TOKEN_ALGORITHMS:
            raise OidcError(f"ID token algorithm {alg!r} is not accepted")
        kid = header.get("kid")
        key = await self._key(str(kid) if kid is not None else None, meta)
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=[str(alg)],
                audience=self.config.client_id,
                issuer=meta.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise OidcError(f"invalid ID token ({type(exc).__name__})") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise OidcError("ID token issued to another party (azp)")
        return claims
