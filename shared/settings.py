"""Settings every service shares; each service subclasses this and is validated at start-up."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.identity.config import DEV_ADDRESS_HASH_KEY, check_environment_present
from shared.topics import Topics

#: The bootstrap key of dev and test stacks when none is set (a full admin there); prod refuses it.
DEV_ADMIN_KEY = "dev-admin-key"
#: Public development values every service's prod check refuses as secrets.
DEV_SECRETS = (DEV_ADMIN_KEY, DEV_ADDRESS_HASH_KEY)


def asyncpg_url(url: str) -> str:
    """Accept the usual ``postgres://`` / ``postgresql://`` forms and select the asyncpg driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


class CommonSettings(BaseSettings):
    """Connection and runtime settings; environment variables are upper-case with a ``CSAT_`` prefix.

    ``CSAT_ENVIRONMENT`` has no default: a service refuses to start until it says dev, test or prod (a
    forgotten variable must not silently mean dev). The admin key is ``IdentitySettings``'s bootstrap key.
    """

    model_config = SettingsConfigDict(env_prefix="CSAT_", extra="ignore", populate_by_name=True)

    environment: Literal["dev", "test", "prod"]
    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "CSAT_KAFKA_BOOTSTRAP")
    )
    kafka_idempotence: bool = Field(
        default=False,
        description="Idempotent producer; on for Apache Kafka, off for the embedded Tansu broker",
    )
    kafka_request_timeout_s: float = Field(default=5.0, gt=0)
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=1000,
        description="Consumer group session; a dead consumer's partitions move after it",
    )
    kafka_heartbeat_ms: int = Field(default=3_000, ge=100)
    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/csat",
        validation_alias=AliasChoices("DATABASE_URL", "CSAT_DATABASE_URL"),
    )
    db_pool_size: int = Field(default=5, ge=1)
    db_ping_idle_s: float | None = Field(
        default=1.0,
        ge=0,
        description="Check pooled connections idle longer than this before use (unset: before every use)",
    )
    topic_prefix: str = ""
    retention_comment_days: int = Field(
        default=365, ge=1, description="Comments and free text older than this are removed (GDPR 5(1)(e))"
    )
    retention_contact_days: int = Field(
        default=730,
        ge=1,
        description="Contact data (addresses, message copies, requests) unused for this long is removed",
    )
    retention_hour_utc: int = Field(default=3, ge=0, le=23, description="The nightly retention run's hour")
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    host: str = "127.0.0.1"
    port: int = 8000
    internal_port: int | None = Field(
        default=None,
        description="Health, readiness, metrics and the OpenAPI documents on this port only (`csat serve` "
        "listens on both); unset: on the main port",
    )

    @model_validator(mode="before")
    @classmethod
    def _environment_given(cls, data: Any) -> Any:
        return check_environment_present(data)

    @field_validator("database_url")
    @classmethod
    def _driver(cls, value: str) -> str:
        return asyncpg_url(value)

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix)
