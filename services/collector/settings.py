"""Collector settings, validated at start-up; production refuses anonymous posting and dev secrets."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from shared.emaillinks import DEV_SIGNING_SECRET as DEV_SIGNING_SECRET  # signs email links in dev/test only
from shared.identity.config import IdentitySettings, SecretCheck, refuse_weak_secrets
from shared.settings import DEV_SECRETS, CommonSettings

#: Derives each source's identity secret; works only with ``CSAT_ENVIRONMENT=dev|test``.
DEV_SOURCE_IDENTITY_KEY = "dev-source-identity-key-not-for-production"


class CollectorSettings(CommonSettings, IdentitySettings):
    port: int = 8000
    publish_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for the broker's ack")
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503")
    reclick_window_s: int = Field(
        default=900,
        ge=0,
        le=86_400,
        description="A second, different answer through an email link within this many seconds of the "
        "first replaces it (0: the first answer stands); a link that carries its survey's window wins",
    )
    max_batch_items: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_future_skew_s: int = Field(default=300, ge=0, description="How far in the future occurred_at may be")
    db_pool_size: int = Field(default=10, ge=1)
    db_timeout_s: float = Field(default=2.0, gt=0, description="Longest wait for a database answer")

    require_api_key: bool | None = Field(
        default=None,
        description="Refuse ratings without a source key; defaults to on outside dev and test "
        "(in dev, anonymous posts are attributed to the `dev` source)",
    )
    key_cache_s: float = Field(default=10.0, ge=0, description="How long a looked-up key is trusted")
    key_cache_stale_s: float = Field(
        default=300.0, ge=0, description="Keep using a known key this long while the database is away"
    )
    idempotency_ttl_h: float = Field(default=168.0, gt=0, description="How long a rating_id is remembered")
    idempotency_wait_s: float = Field(
        default=6.0, gt=0, description="How long a retry waits for a concurrent first attempt to finish"
    )
    publish_linger_ms: int = Field(
        default=0,
        ge=0,
        le=100,
        description="How long the producer holds a record for more to share its request; 0 sends at once "
        "(records still share a request while the previous one to the broker is in flight)",
    )
    fast_path: bool = Field(
        default=True,
        description="Serve well-formed rating and interaction requests without FastAPI's dependency solving "
        "(off: FastAPI's handler for every request; the answers are the same)",
    )
    db_reset_sessions: bool = Field(
        default=False,
        description="asyncpg's session reset each time a claim connection goes back to its pool (one more "
        "statement per claim; the claims leave no session state): only to compare",
    )
    db_custom_plans: bool = Field(
        default=True,
        description="Plan the claim statements for the table as it is at each execution "
        "(plan_cache_mode=force_custom_plan on their connections); off: PostgreSQL's cached generic plan, "
        "which, made while the table was small, scans the whole table on every claim until the next ANALYZE",
    )
    gc_freeze: bool = Field(
        default=True,
        description="Move the objects built at startup out of the garbage collector's sight (gc.freeze), so "
        "full collections stay short",
    )
    claim_group: bool = Field(
        default=True,
        description="Group commit of idempotency claims: the claims of concurrent requests share one "
        "statement (off: one statement per request)",
    )
    claim_group_inflight: int = Field(
        default=1, ge=1, le=8, description="Claim statements running at once when grouping"
    )
    confirm_delay_ms: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="How long accepted ids wait to be confirmed together in one statement (off the request's "
        "path; each statement is a write to PostgreSQL the collector pays for); a retry meanwhile sees its "
        "id pending and waits for it (CSAT_IDEMPOTENCY_WAIT_S)",
    )
    confirm_with_claim: bool = Field(
        default=True,
        description="Confirmations ride on the next group claim statement (one transaction for both; a "
        "statement of their own only when no claim comes within CSAT_CONFIRM_DELAY_MS); off: a separate "
        "confirmation statement per delay. Needs CSAT_CLAIM_GROUP",
    )
    fast_encode: bool = Field(
        default=True,
        description="Encode the rating and interaction CloudEvents by hand (off: via the SDK; the same bytes "
        "either way)",
    )
    lean_normalize: bool = Field(
        default=True,
        description="Normalise JSON API ratings and interactions straight to the event's bytes and "
        "fingerprint, without building the event model (off: the model path; the same bytes either way)",
    )
    idempotency_when_db_down: Literal["accept", "refuse"] = Field(
        default="accept",
        description="accept: publish keyed ratings unchecked while PostgreSQL is away (consumers dedupe on "
        "rating_id; a changed body is not refused then); refuse: answer 503",
    )

    rate_key_per_s: float | None = Field(
        default=None,
        ge=0,
        description="Requests per second per key; 0 = off; default 200 outside dev/test, off in them",
    )
    rate_key_burst: int = Field(default=400, ge=1)
    rate_ip_per_s: float | None = Field(
        default=None,
        ge=0,
        description="Requests per second per client IP; 0 = off; default 50 outside dev/test, off in them",
    )
    rate_ip_burst: int = Field(default=100, ge=1)
    rate_max_clients: int = Field(default=100_000, ge=100, description="Buckets kept in memory per limiter")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose X-Forwarded-For is believed (e.g. 10.0.0.0/8)",
    )

    public_url: str | None = Field(
        default=None,
        description="Base URL clients reach the collector at; builds email links and the URL Twilio "
        "signed. Defaults to http://host:port",
    )
    signing_secret: SecretStr = Field(
        default=SecretStr(DEV_SIGNING_SECRET),
        description="Signs email-link tokens (HMAC-SHA256); required in prod",
    )
    signing_secret_previous: list[SecretStr] = Field(
        default_factory=list, description="Older secrets still accepted for email links (rotation)"
    )
    email_link_accept_sha1: bool = Field(
        default=False,
        description="Also accept email links minted before links were HMAC-SHA256 (itsdangerous' "
        "default HMAC-SHA1); off: those links answer 403 'not valid'",
    )
    source_identity_key: SecretStr = Field(
        default=SecretStr(DEV_SOURCE_IDENTITY_KEY),
        description="Derives each source's identity secret (customer proofs); required in prod",
    )
    identity_secret_grace_h: float = Field(
        default=168.0, ge=0, description="How long a source's previous identity secret stays valid"
    )
    email_link_ttl_h: float = Field(default=336.0, gt=0, description="Default validity of an email link")
    sms_survey_ttl_h: float = Field(default=72.0, gt=0, description="How long an SMS survey awaits a reply")
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="Validates X-Twilio-Signature; the SMS webhook is off without it"
    )
    demo_widget_key: SecretStr | None = Field(
        default=None, description="Public key of the `demo` source; enables GET /demo (dev only)"
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ip_network(cidr, strict=False)
        return value

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("public_url must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _prod_rules(self) -> CollectorSettings:
        if self.environment == "prod":
            if self.require_api_key is False:
                raise ValueError("CSAT_REQUIRE_API_KEY cannot be false when CSAT_ENVIRONMENT=prod")
            if self.demo_widget_key is not None:
                raise ValueError("CSAT_DEMO_WIDGET_KEY is for dev only")
            refuse_weak_secrets(environment=self.environment, checks=self.secret_checks())
        if len(self.signing_secret.get_secret_value()) < 16:
            raise ValueError("CSAT_SIGNING_SECRET must be at least 16 characters")
        return self

    def secret_checks(self) -> list[SecretCheck]:
        """Every secret prod refuses missing, public or weak, named in one message."""
        public = [DEV_SIGNING_SECRET, DEV_SOURCE_IDENTITY_KEY, *DEV_SECRETS]
        return [
            SecretCheck.of("CSAT_SIGNING_SECRET", self.signing_secret, public_values=public),
            *(
                SecretCheck.of(f"CSAT_SIGNING_SECRET_PREVIOUS[{i}]", s, public_values=public)
                for i, s in enumerate(self.signing_secret_previous)
            ),
            SecretCheck.of("CSAT_SOURCE_IDENTITY_KEY", self.source_identity_key, public_values=public),
            SecretCheck.of("CSAT_TWILIO_AUTH_TOKEN", self.twilio_auth_token, required=False, min_chars=16),
            *self.identity_secret_checks(public_values=public),
        ]

    @property
    def identity_platform_key(self) -> str:
        return self.source_identity_key.get_secret_value()

    @property
    def keys_required(self) -> bool:
        if self.require_api_key is None:
            return self.environment == "prod"
        return self.require_api_key

    @property
    def key_rate(self) -> float:
        """Per-key rate in force: local stacks, benchmarks and tests are not throttled unless asked."""
        if self.rate_key_per_s is not None:
            return self.rate_key_per_s
        return 200.0 if self.environment == "prod" else 0.0

    @property
    def ip_rate(self) -> float:
        if self.rate_ip_per_s is not None:
            return self.rate_ip_per_s
        return 50.0 if self.environment == "prod" else 0.0

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def proxy_networks(self) -> list[IPv4Network | IPv6Network]:
        return [ip_network(c, strict=False) for c in self.trusted_proxies]
