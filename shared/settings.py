"""Settings every service shares; each service subclasses this and is validated at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.topics import Topics

#: Works only with ``CSAT_ENVIRONMENT=dev`` or ``test``: production refuses to start with it.
DEV_ADMIN_KEY = "dev-admin-key"


def asyncpg_url(url: str) -> str:
    """Accept the usual ``postgres://`` / ``postgresql://`` forms and select the asyncpg driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


class CommonSettings(BaseSettings):
    """Connection and runtime settings; environment variables are upper-case with a ``CSAT_`` prefix."""

    model_config = SettingsConfigDict(env_prefix="CSAT_", extra="ignore", populate_by_name=True)

    environment: Literal["dev", "test", "prod"] = "dev"
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
    admin_api_key: SecretStr = Field(
        default=SecretStr(DEV_ADMIN_KEY), description="Bearer key for admin endpoints; required in prod"
    )

    @field_validator("database_url")
    @classmethod
    def _driver(cls, value: str) -> str:
        return asyncpg_url(value)

    @model_validator(mode="after")
    def _no_dev_secrets_in_prod(self) -> CommonSettings:
        if self.environment == "prod" and self.admin_api_key.get_secret_value() == DEV_ADMIN_KEY:
            raise ValueError("CSAT_ADMIN_API_KEY must be set to a real secret when CSAT_ENVIRONMENT=prod")
        return self

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix)
