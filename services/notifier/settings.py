"""Notifier settings: which provider serves each channel, its credentials, and the send-time rules."""

from __future__ import annotations

from datetime import tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from services.notifier.policy import QuietHours
from shared.identity.config import IdentitySettings, SecretCheck, refuse_weak_secrets
from shared.settings import DEV_SECRETS, CommonSettings

#: Works only with ``CSAT_ENVIRONMENT=dev`` or ``test``: production refuses to start with it.
DEV_UNSUBSCRIBE_SECRET = "dev-unsubscribe-secret"  # noqa: S105 - dev-only, refused in prod


class NotifierSettings(CommonSettings, IdentitySettings):
    port: int = 8003
    consumer_group: str = "csat-notifier"
    max_batch: int = Field(default=200, ge=1)
    min_batch_interval_ms: int = Field(
        default=50,
        ge=0,
        description="Least time between two batches' starts (each also wakes a send): under load a batch "
        "takes what arrived meanwhile",
    )

    # ---- providers per channel ----------------------------------------------------------------------
    email_provider: Literal["outbox", "sendgrid", "mailgun", "postmark"] = "outbox"
    sms_provider: Literal["outbox", "twilio"] = "outbox"
    chat_provider: Literal["outbox", "slack"] = "outbox"
    webhook_provider: Literal["outbox", "webhook"] = "outbox"
    outbox_dir: Path | None = Field(default=None, description="Also write each outbox message as a file here")
    from_email: str = "feedback@example.com"
    from_name: str = "Customer Care"
    provider_timeout_s: float = Field(default=10.0, gt=0, description="Per phase: connect, write, read")

    sendgrid_api_key: SecretStr | None = None
    sendgrid_base_url: str = "https://api.sendgrid.com"
    mailgun_api_key: SecretStr | None = None
    mailgun_domain: str | None = None
    mailgun_base_url: str = Field(
        default="https://api.mailgun.net", description="EU: https://api.eu.mailgun.net"
    )
    postmark_server_token: SecretStr | None = None
    postmark_base_url: str = "https://api.postmarkapp.com"
    postmark_message_stream: str = "outbound"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = Field(default=None, description="E.164 sender number")
    twilio_messaging_service_sid: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    collector_url: str | None = Field(
        default=None,
        description="The collector's internal listener: each survey SMS is registered there before it goes "
        "out, so the reply to the Twilio webhook answers its invitation (unset: not registered)",
    )
    collector_token: SecretStr | None = Field(
        default=None, description="An API token with surveys:admin, for CSAT_COLLECTOR_URL"
    )
    slack_webhook_url: SecretStr | None = Field(
        default=None, description="Incoming webhook used when a rule names no URL; the URL is the secret"
    )
    webhook_url: str | None = Field(default=None, description="Generic webhook used when a rule names none")
    webhook_secret: SecretStr | None = Field(default=None, description="HMAC key for X-CSAT-Signature")

    # ---- delivery -----------------------------------------------------------------------------------
    max_attempts: int = Field(default=5, ge=1, description="Then the message is dead-lettered")
    retry_base_s: float = Field(default=2.0, gt=0)
    retry_cap_s: float = Field(default=600.0, gt=0)
    dispatch_interval_s: float = Field(
        default=0.2, gt=0, description="How often due deliveries are polled (new ones also wake it at once)"
    )
    dispatch_concurrency: int = Field(default=16, ge=1, description="Sends in flight per channel")
    dispatch_batch: int = Field(
        default=200, ge=1, description="Outbox deliveries claimed, written and recorded per transaction"
    )
    dispatch_listen: bool = Field(
        default=True, description="Wake on the intake's NOTIFY instead of waiting for the next poll"
    )
    lease_grace_s: float = Field(
        default=30.0, ge=0, description="Past an attempt's deadline, a 'sending' record is presumed crashed"
    )
    reconcile_unknown: bool = Field(
        default=True,
        description="Ask providers that can tell (SendGrid's Email Activity API) whether an 'unknown' "
        "delivery went out: found -> sent, absent twice -> sent again",
    )
    reconcile_settle_s: float = Field(
        default=600.0,
        gt=0,
        description="Age of an unknown attempt before the provider is asked, and the gap between the two "
        "'absent' answers that allow a resend (the provider's indexing delay)",
    )
    reconcile_interval_s: float = Field(
        default=30.0, gt=0, description="How often unknown rows are looked for"
    )
    reconcile_lookups_per_minute: float = Field(
        default=5.0, gt=0, description="Per replica; SendGrid allows 6 Email Activity requests per minute"
    )
    reconcile_max_age_s: float = Field(
        default=86_400.0,
        gt=0,
        description="Unknown deliveries older than this are left to a person (the provider's history "
        "may no longer hold them)",
    )

    # ---- consent and fatigue (customer-facing messages only) -----------------------------------------
    public_base_url: str = Field(default="http://127.0.0.1:8003", description="Base of unsubscribe links")
    unsubscribe_secret: SecretStr = Field(default=SecretStr(DEV_UNSUBSCRIBE_SECRET))
    unsubscribe_previous_secrets: list[SecretStr] = Field(
        default_factory=list, description="Still accepted, so old links keep working after a rotation"
    )
    unsubscribe_mailto: str | None = Field(default=None, description="e.g. unsubscribe@example.com")
    quiet_hours: str = Field(default="21:00-08:00", description="SMS wait outside it; 'off' disables")
    default_timezone: str = Field(default="UTC", description="For recipients whose time zone is unknown")
    daily_cap: int = Field(
        default=3, ge=0, description="Customer-facing messages per customer per day; 0 = no cap"
    )
    daily_cap_per_address: int = Field(
        default=3,
        ge=0,
        description="Customer-facing messages per recipient address (email or phone) per day, whatever "
        "the customer ids; 0 = no cap",
    )
    daily_cap_per_source: int = Field(
        default=10_000,
        ge=0,
        description="Customer-facing messages caused by one collector source's ratings per day; 0 = no cap",
    )
    unsubscribe_accept_sha1: bool = Field(
        default=True,
        description="Still read unsubscribe tokens of earlier releases (HMAC-SHA1); links already sent "
        "must keep working. New tokens are HMAC-SHA256",
    )

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        QuietHours.parse(value)
        return value

    @field_validator("default_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _credentials(self) -> NotifierSettings:
        need: list[tuple[bool, str]] = []
        if self.email_provider == "sendgrid":
            need.append((self.sendgrid_api_key is not None, "CSAT_SENDGRID_API_KEY"))
        if self.email_provider == "mailgun":
            need.append((self.mailgun_api_key is not None, "CSAT_MAILGUN_API_KEY"))
            need.append((bool(self.mailgun_domain), "CSAT_MAILGUN_DOMAIN"))
        if self.email_provider == "postmark":
            need.append((self.postmark_server_token is not None, "CSAT_POSTMARK_SERVER_TOKEN"))
        if self.sms_provider == "twilio":
            need.append((bool(self.twilio_account_sid), "CSAT_TWILIO_ACCOUNT_SID"))
            need.append((self.twilio_auth_token is not None, "CSAT_TWILIO_AUTH_TOKEN"))
            need.append(
                (
                    bool(self.twilio_from or self.twilio_messaging_service_sid),
                    "CSAT_TWILIO_FROM or CSAT_TWILIO_MESSAGING_SERVICE_SID",
                )
            )
        if self.webhook_provider == "webhook":
            need.append((self.webhook_secret is not None, "CSAT_WEBHOOK_SECRET"))
        if self.collector_url:
            need.append((self.collector_token is not None, "CSAT_COLLECTOR_TOKEN"))
        missing = [name for ok, name in need if not ok]
        if missing:
            raise ValueError(f"missing provider credentials: {', '.join(missing)}")
        if self.environment == "prod":
            if not self.public_base_url.startswith("https://"):
                raise ValueError(
                    "CSAT_PUBLIC_BASE_URL must be https in prod (RFC 8058 one-click unsubscribe)"
                )
            refuse_weak_secrets(environment=self.environment, checks=self.secret_checks())
        return self

    def secret_checks(self) -> list[SecretCheck]:
        """Every secret prod refuses missing, public or weak, named in one message."""
        public = [DEV_UNSUBSCRIBE_SECRET, *DEV_SECRETS]
        return [
            SecretCheck.of("CSAT_UNSUBSCRIBE_SECRET", self.unsubscribe_secret, public_values=public),
            *(
                SecretCheck.of(f"CSAT_UNSUBSCRIBE_PREVIOUS_SECRETS[{i}]", s, public_values=public)
                for i, s in enumerate(self.unsubscribe_previous_secrets)
            ),
            SecretCheck.of("CSAT_WEBHOOK_SECRET", self.webhook_secret, required=False, public_values=public),
            *self.identity_secret_checks(public_values=public),
        ]

    @property
    def quiet_window(self) -> QuietHours | None:
        return QuietHours.parse(self.quiet_hours)

    @property
    def default_zone(self) -> tzinfo:
        return ZoneInfo(self.default_timezone)

    @property
    def unsubscribe_secrets(self) -> list[str]:
        return [s.get_secret_value() for s in [self.unsubscribe_secret, *self.unsubscribe_previous_secrets]]
