"""Console settings, validated at start-up: sessions, the signing key, OpenID Connect, the APIs it calls.

Development values exist only for ``CSAT_ENVIRONMENT=dev|test``: prod names every missing or weak
secret at once (``refuse_weak_secrets``) and refuses insecure cookies and plain-http providers.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from shared.identity.accesstokens import InvalidKey, SigningKey
from shared.identity.config import (
    IdentitySettings,
    SecretCheck,
    SettingsRefused,
    check_environment_present,
    refuse_weak_secrets,
)
from shared.settings import DEV_SECRETS, CommonSettings

#: Keys CSRF tokens and the OpenID round-trip cookie in dev and test only; prod refuses it.
DEV_SESSION_SECRET = "dev-console-session-secret-not-for-production"  # noqa: S105 - refused in prod

SERVICE = "console"


@dataclass(frozen=True, slots=True)
class ServiceUrls:
    """Where the console reaches the other services' APIs (inside the cluster: their Services)."""

    collector: str
    scorer: str
    actions: str
    notifier: str


class ConsoleSettings(CommonSettings, IdentitySettings):
    port: int = 8004
    public_url: str | None = Field(
        default=None,
        description="Base URL people reach the console at (OpenID redirect, sign-in links); "
        "defaults to http://host:port",
    )
    session_secret: SecretStr | None = Field(
        default=None, description="Keys CSRF tokens and the OpenID round-trip cookie; required in prod"
    )
    identity_signing_key: SecretStr | None = Field(
        default=None,
        description="The console's Ed25519 private JWK that signs access tokens; required in prod "
        "(dev/test without it: a key made at start-up, which no other service trusts)",
    )
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60, description="Signed out after this idle")
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30, description="Signed out after this, always")
    session_touch_s: float = Field(
        default=60.0, ge=1, description="A session's last activity is written at most this often"
    )
    cookie_secure: bool | None = Field(
        default=None,
        description="Secure cookies with the __Host- prefix; default on outside dev (prod refuses off)",
    )
    access_token_ttl_s: int = Field(default=300, ge=60, le=900, description="Lifetime of access tokens")
    access_token_refresh_s: int = Field(
        default=60, ge=5, description="Mint the next access token when fewer seconds than this remain"
    )
    sign_in_link_minutes: int = Field(default=15, ge=1, le=24 * 60, description="Validity of one-time links")
    trusted_proxies: list[str] = Field(
        default_factory=list, description="CIDRs of reverse proxies whose X-Forwarded-For is believed"
    )
    oidc_issuer: str | None = Field(default=None, description="OpenID provider's issuer URL; none = off")
    oidc_client_id: str | None = Field(default=None, description="The console's client id at the provider")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="Client secret (confidential client); none = public client with PKCE"
    )
    oidc_scopes: list[str] = Field(default_factory=lambda: ["openid", "email", "profile"])
    oidc_display_name: str = Field(
        default="single sign-on", description="Names the provider on the sign-in button"
    )
    scorer_url: str = Field(default="http://127.0.0.1:8001", description="The scorer's API")
    actions_url: str = Field(default="http://127.0.0.1:8002", description="The actions service's API")
    notifier_url: str = Field(default="http://127.0.0.1:8003", description="The notifier's API")
    collector_url: str = Field(default="http://127.0.0.1:8000", description="The collector's API")
    time_zone: str = Field(default="UTC", description="Time zone dates and times are shown in")
    api_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for another service")
    db_timeout_s: float = Field(default=2.0, gt=0, description="Longest wait for a database answer")
    live_enabled: bool = Field(
        default=True, description="Read csat.scores.changed.v1 so open Scores pages refresh as scores move"
    )
    live_max_streams: int = Field(default=500, ge=1, description="Open live pages one process serves")
    live_max_streams_per_session: int = Field(default=6, ge=1, description="Open live pages per session")
    live_heartbeat_s: float = Field(
        default=15.0, gt=0, le=120, description="A comment on idle live streams so proxies keep them open"
    )
    live_min_gap_s: float = Field(
        default=2.0, ge=0, le=60, description="At most one refresh per live page this often (bursts coalesce)"
    )
    live_session_check_s: float = Field(
        default=60.0, gt=0, description="A live stream re-reads its session this often and ends with it"
    )
    alerts_poll_s: float = Field(
        default=15.0, ge=1, le=600, description="An open alert inbox asks for new alerts this often"
    )
    dimensions: list[str] = Field(
        default_factory=lambda: ["store", "channel", "country", "product", "plan", "agent", "team"],
        description="Dimensions the Segments view suggests (any other can be typed)",
    )

    @model_validator(mode="before")
    @classmethod
    def _environment_given(cls, data: Any) -> Any:
        return check_environment_present(data)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ip_network(cidr, strict=False)
        return value

    @field_validator("public_url", "scorer_url", "actions_url", "notifier_url", "collector_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _prod_rules(self) -> ConsoleSettings:
        if self.environment == "prod":
            problems = []
            if self.cookie_secure is False:
                problems.append("CSAT_COOKIE_SECURE cannot be false")
            if self.oidc_issuer and not self.oidc_issuer.startswith("https://"):
                problems.append("CSAT_OIDC_ISSUER must be an https:// URL")
            if not (self.public_url or "").startswith("https://"):
                problems.append("CSAT_PUBLIC_URL must be the console's https:// address")
            if problems:
                raise SettingsRefused("CSAT_ENVIRONMENT=prod refuses to start: " + "; ".join(problems))
            refuse_weak_secrets(environment=self.environment, checks=self.secret_checks())
        if self.oidc_issuer and not self.oidc_client_id:
            raise SettingsRefused("CSAT_OIDC_CLIENT_ID is required with CSAT_OIDC_ISSUER")
        if self.identity_signing_key is not None:
            try:
                SigningKey.from_jwk(self.identity_signing_key.get_secret_value())
            except InvalidKey as exc:
                raise SettingsRefused(f"CSAT_IDENTITY_SIGNING_KEY: {exc}") from None
        return self

    def secret_checks(self) -> list[SecretCheck]:
        public = [DEV_SESSION_SECRET, *DEV_SECRETS]
        return [
            SecretCheck.of("CSAT_SESSION_SECRET", self.session_secret, public_values=public),
            SecretCheck.of("CSAT_IDENTITY_SIGNING_KEY", self.identity_signing_key, min_chars=0),
            *self.identity_secret_checks(public_values=public),
            *(
                [SecretCheck.of("CSAT_OIDC_CLIENT_SECRET", self.oidc_client_secret, required=False)]
                if self.oidc_issuer
                else []
            ),
        ]

    @property
    def secure_cookies(self) -> bool:
        return self.cookie_secure if self.cookie_secure is not None else self.environment != "dev"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def session_key(self) -> bytes:
        """The CSRF and round-trip cookie key (the dev value only where prod's check did not run)."""
        secret = self.session_secret.get_secret_value() if self.session_secret else DEV_SESSION_SECRET
        return secret.encode()

    def signing_key(self) -> SigningKey:
        """The configured key, or in dev/test one made now (the other services will not trust it)."""
        if self.identity_signing_key is not None:
            return SigningKey.from_jwk(self.identity_signing_key.get_secret_value())
        return SigningKey.generate()

    @property
    def service_urls(self) -> ServiceUrls:
        return ServiceUrls(
            collector=self.collector_url,
            scorer=self.scorer_url,
            actions=self.actions_url,
            notifier=self.notifier_url,
        )

    @property
    def proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(c, strict=False) for c in self.trusted_proxies]
