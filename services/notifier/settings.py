"""Notifier settings: which provider serves each channel, and its credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from shared.settings import CommonSettings


class NotifierSettings(CommonSettings):
    port: int = 8003
    consumer_group: str = "csat-notifier"
    max_batch: int = Field(default=200, ge=1)
    email_provider: Literal["outbox", "sendgrid"] = "outbox"
    sms_provider: Literal["outbox"] = "outbox"
    chat_provider: Literal["outbox"] = "outbox"
    outbox_dir: Path | None = Field(default=None, description="Also write each outbox message as a file here")
    from_email: str = "feedback@example.com"
    from_name: str = "Customer Care"
    sendgrid_api_key: SecretStr | None = None
    sendgrid_base_url: str = "https://api.sendgrid.com"
    provider_timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)

    @model_validator(mode="after")
    def _credentials(self) -> NotifierSettings:
        if self.email_provider == "sendgrid" and self.sendgrid_api_key is None:
            raise ValueError("CSAT_SENDGRID_API_KEY is required when CSAT_EMAIL_PROVIDER=sendgrid")
        return self
