"""Settings helpers every service's settings class will use: the environment, secrets, identity keys.

- ``check_environment_present``: ``CSAT_ENVIRONMENT`` has no default; a service refuses to start until
  it says dev, test or prod (a forgotten variable must not silently mean dev).
- ``SecretCheck`` / ``refuse_weak_secrets``: in prod, every missing, public (dev) or weak secret is
  named in ONE message, so an operator fixes them all in one pass.
- ``IdentitySettings``: the identity fields (public keys, caches, bootstrap key, address-hash key,
  audit retention, outbound allow-list, minimum group size) a service settings class inherits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.identity.accesstokens import AccessTokenVerifier, KeyRing
from shared.security.hashing import AddressHasher
from shared.security.ssrf import OutboundPolicy

Environment = Literal["dev", "test", "prod"]
ENVIRONMENTS: tuple[Environment, ...] = ("dev", "test", "prod")
MIN_SECRET_CHARS = 32
MIN_DISTINCT_CHARS = 10
GENERATE_HINT = "generate each with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
#: The address-hash key of dev and test stacks when none is set; public, so refused in prod.
DEV_ADDRESS_HASH_KEY = "dev-address-hash-key-not-for-production-use"


class SettingsRefused(ValueError):
    """Settings a service must not start with; the message lists every problem at once."""


def check_environment_present(data: Any) -> Any:
    """A ``model_validator(mode="before")`` body: refuse settings without ``environment``.

    Reads the raw input (environment variables are already mapped to field names), so the message can
    say what to do instead of pydantic's bare "Field required".
    """
    value = data.get("environment") if isinstance(data, Mapping) else None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise SettingsRefused(
            "CSAT_ENVIRONMENT must be set to dev, test or prod (nothing is assumed; `make run` sets dev)"
        )
    if value not in ENVIRONMENTS:
        raise SettingsRefused(f"CSAT_ENVIRONMENT must be dev, test or prod, not {value!r}")
    return data


@dataclass(frozen=True, slots=True)
class SecretCheck:
    """One secret setting: its variable name, the configured value, and what makes it unacceptable."""

    name: str
    value: str | None
    required: bool = True
    min_chars: int = MIN_SECRET_CHARS
    public_values: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(
        cls,
        name: str,
        value: SecretStr | str | None,
        *,
        required: bool = True,
        min_chars: int = MIN_SECRET_CHARS,
        public_values: Iterable[str] = (),
    ) -> SecretCheck:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return cls(name, raw, required, min_chars, frozenset(public_values))


def secret_weakness(check: SecretCheck) -> str | None:
    """What is wrong with one secret in prod, or None. Randomness is estimated, not proven."""
    value = check.value
    if value is None or not value.strip():
        return "missing" if check.required else None
    if value in check.public_values:
        return "the public development value"
    if len(value) < check.min_chars:
        return f"shorter than {check.min_chars} characters"
    distinct = len(set(value))
    most = max(value.count(c) for c in set(value))
    if distinct < MIN_DISTINCT_CHARS or most * 4 > len(value):
        return "not random (too few distinct characters)"
    return None


def weak_secrets(checks: Iterable[SecretCheck]) -> list[str]:
    """``["CSAT_X (missing)", "CSAT_Y (shorter than 32 characters)"]``, in the order given."""
    out: list[str] = []
    for check in checks:
        why = secret_weakness(check)
        if why:
            out.append(f"{check.name} ({why})")
    return out


def refuse_weak_secrets(*, environment: str, checks: Iterable[SecretCheck]) -> None:
    """In prod, raise one ``SettingsRefused`` naming every problem; dev and test accept anything."""
    if environment != "prod":
        return
    problems = weak_secrets(checks)
    if problems:
        raise SettingsRefused(
            "CSAT_ENVIRONMENT=prod refuses to start; fix these secrets: "
            f"{'; '.join(problems)} ({GENERATE_HINT})"
        )


class IdentitySettings(BaseSettings):
    """Identity fields of a service: ``class ScorerSettings(CommonSettings, IdentitySettings)``."""

    model_config = SettingsConfigDict(env_prefix="CSAT_", extra="ignore", populate_by_name=True)

    identity_issuer: str = Field(default="csat-console", description="iss of console access tokens")
    identity_audience: str = Field(default="csat-api", description="aud of console access tokens")
    identity_public_keys: str | None = Field(
        default=None,
        description='JWKS of the console\'s public signing keys: {"keys": [...]}; none = no people',
    )
    access_token_leeway_s: int = Field(default=30, ge=0, le=300, description="Clock skew tolerated")
    access_token_max_ttl_s: int = Field(default=900, ge=60, le=3600, description="Longest lifetime accepted")
    token_cache_s: float = Field(
        default=30.0,
        ge=0,
        le=300,
        description="API-token lookups are trusted this long: the revocation bound",
    )
    token_cache_stale_s: float = Field(
        default=0.0, ge=0, description="Keep a known token working this long while the database is away"
    )
    token_touch_s: float = Field(default=60.0, ge=1, description="last_used_at is written at most this often")
    bootstrap_admin_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "CSAT_BOOTSTRAP_ADMIN_KEY", "CSAT_ADMIN_API_KEY", "bootstrap_admin_key", "admin_api_key"
        ),
        description="Creates the first admin and tokens only; >= 32 random characters in prod",
    )
    address_hash_key: SecretStr | None = Field(
        default=None, description="HMAC key of email/phone/customer hashes; its own key, required in prod"
    )
    address_hash_previous_keys: list[SecretStr] = Field(
        default_factory=list, description="Older address-hash keys, still matched during a rotation"
    )
    audit_retention_days: int = Field(
        default=400, ge=1, description="Audit entries older than this are purged"
    )
    outbound_allow: list[str] = Field(
        default_factory=list, description="CIDRs or host names outbound URLs may reach despite the SSRF guard"
    )
    min_group_size: int = Field(
        default=5, ge=1, description="Below this many answers, roles under manager see no distribution"
    )

    def identity_secret_checks(self, *, public_values: Iterable[str] = ()) -> list[SecretCheck]:
        """The identity secrets for ``refuse_weak_secrets``; ``public_values``: the dev defaults."""
        public = frozenset(public_values)
        checks = [
            SecretCheck.of(
                "CSAT_BOOTSTRAP_ADMIN_KEY", self.bootstrap_admin_key, required=False, public_values=public
            ),
            SecretCheck.of("CSAT_ADDRESS_HASH_KEY", self.address_hash_key, public_values=public),
        ]
        checks += [
            SecretCheck.of(f"CSAT_ADDRESS_HASH_PREVIOUS_KEYS[{i}]", key, public_values=public)
            for i, key in enumerate(self.address_hash_previous_keys)
        ]
        if not self.identity_public_keys:
            checks.append(SecretCheck("CSAT_IDENTITY_PUBLIC_KEYS", None, min_chars=0))
        return checks

    def key_ring(self) -> KeyRing:
        return KeyRing.from_jwks(self.identity_public_keys) if self.identity_public_keys else KeyRing()

    def access_verifier(self) -> AccessTokenVerifier | None:
        """None when no public key is configured: then no person's token is accepted here."""
        ring = self.key_ring()
        if not ring.keys:
            return None
        return AccessTokenVerifier(
            keys=ring,
            issuer=self.identity_issuer,
            audience=self.identity_audience,
            leeway_s=self.access_token_leeway_s,
            max_ttl_s=self.access_token_max_ttl_s,
        )

    def address_hasher(self) -> AddressHasher | None:
        if self.address_hash_key is None:
            return None
        return AddressHasher([self.address_hash_key, *self.address_hash_previous_keys])

    def address_hasher_for(self, environment: str) -> AddressHasher:
        """The configured hasher; dev and test fall back to the public dev key, prod refuses to guess."""
        hasher = self.address_hasher()
        if hasher is not None:
            return hasher
        if environment == "prod":
            raise SettingsRefused("CSAT_ADDRESS_HASH_KEY must be set when CSAT_ENVIRONMENT=prod")
        return AddressHasher([DEV_ADDRESS_HASH_KEY, *self.address_hash_previous_keys])

    def outbound_policy(self, environment: str) -> OutboundPolicy:
        return OutboundPolicy.for_environment(environment, self.outbound_allow)
