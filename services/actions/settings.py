"""Actions settings (``CSAT_*`` environment variables), validated at start-up."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from shared.emaillinks import DEV_SIGNING_SECRET
from shared.identity.config import IdentitySettings, SecretCheck, refuse_weak_secrets
from shared.security.urls import TemplateError, fill_url_template
from shared.settings import DEV_SECRETS, CommonSettings
from shared.verbatims import DEFAULT_THEMES

DEFAULT_RULES = Path(__file__).parent / "playbooks" / "default.yaml"
DEFAULT_SURVEYS = Path(__file__).parent / "playbooks" / "surveys.yaml"
DEFAULT_HEALTH = Path(__file__).parent / "playbooks" / "health.yaml"


class ActionsSettings(CommonSettings, IdentitySettings):
    port: int = 8002
    consumer_group: str = "csat-actions"
    max_batch: int = Field(default=500, ge=1)
    min_batch_interval_ms: int = Field(
        default=0,
        ge=0,
        description="Least time between two batches' starts (0: a batch starts as soon as the last one ends)",
    )
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Rules documents and customer bodies"
    )
    rules_file: Path = Field(
        default=DEFAULT_RULES, description="Seeds the rules in PostgreSQL; the admin API edits them there"
    )
    themes_file: Path = Field(default=DEFAULT_THEMES, description="Verbatim theme taxonomy and lexicons")
    health_model_file: Path = Field(
        default=DEFAULT_HEALTH,
        description="Account health model (docs/health.md); a broken file stops the start",
    )
    default_csm_email: str = Field(default="csm@example.com", description="CSM alerts when no owner is known")
    default_locale: str = "en"
    support_email: str = Field(default="support@example.com", description="Who is asked to call customers")
    escalation_email: str = Field(
        default="escalation@example.com", description="Receives SLA escalations when no manager is mapped"
    )
    csm_managers: dict[str, str] = Field(
        default_factory=dict, description='JSON: CSM email -> manager email, e.g. {"ana@x.com": "boss@x.com"}'
    )
    segment_owners: dict[str, str] = Field(
        default_factory=dict,
        description='JSON: "dimension=value" (or "dimension=*") -> owner, e.g. {"store=paris-1": "m@x.com"}',
    )
    segment_default_owner: str | None = Field(default=None, description="Segment alerts nobody else owns")
    daily_cap: int = Field(default=3, ge=0, description="Customer messages per customer per rolling 24 h")
    survey_url_template: str | None = Field(
        default=None, description="Re-survey link, with {survey_id} and {customer_id}"
    )
    alert_url_template: str | None = Field(default=None, description="Link to an alert, with {alert_id}")
    surveys_file: Path = Field(
        default=DEFAULT_SURVEYS, description="Seeds the survey definitions in PostgreSQL (like the rules)"
    )
    survey_link_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The collector's public address (its CSAT_PUBLIC_URL): survey emails link there",
    )
    signing_secret: SecretStr = Field(
        default=SecretStr(DEV_SIGNING_SECRET),
        description="Signs the survey links: the collector's CSAT_SIGNING_SECRET (the collector refuses the "
        "dev value in prod, so links signed with it never verify there)",
    )
    survey_brand: str = Field(default="CSAT", description="The sender's name in survey emails")
    timer_poll_s: float = Field(default=1.0, gt=0, le=60, description="How often due timers are looked for")
    timer_batch: int = Field(default=100, ge=1, le=10_000)
    scheduler_enabled: bool = True
    survey_watch_interval_s: float = Field(
        default=900.0,
        gt=0,
        description="How often the survey response-drop watch looks for a newly closed day (docs/surveys.md)",
    )
    history_days: int = Field(default=90, ge=1, description="How far back the trend looks")
    history_limit: int = Field(default=50, ge=3, description="Ratings per customer read for history facts")
    trend_size: int = Field(default=5, ge=3, description="Ratings in the trend (slope) window")
    decline_slope: float = Field(default=-0.1, lt=0, description="Slope per rating (0..1 scale) = declining")

    @field_validator("survey_url_template", "alert_url_template")
    @classmethod
    def _url_template(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Plain ``{name}`` placeholders of the values given, each percent-encoded when filled."""
        if value is not None:
            names = {"survey_url_template": ("survey_id", "customer_id"), "alert_url_template": ("alert_id",)}
            try:
                fill_url_template(value, dict.fromkeys(names[str(info.field_name)], "x"))
            except TemplateError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @field_validator("csm_managers", "segment_owners")
    @classmethod
    def _lower_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.strip().lower() if "@" in k else k.strip(): v.strip() for k, v in value.items()}

    @model_validator(mode="after")
    def _prod_secrets(self) -> ActionsSettings:
        if self.environment == "prod" and not self.survey_link_base_url.startswith("https://"):
            # Survey emails with http links are refused by the notifier's mail check in prod.
            raise ValueError("CSAT_SURVEY_LINK_BASE_URL must be the collector's https address in prod")
        refuse_weak_secrets(environment=self.environment, checks=self.secret_checks())
        return self

    def secret_checks(self) -> list[SecretCheck]:
        """Every secret prod refuses missing, public or weak, named in one message."""
        public = [DEV_SIGNING_SECRET, *DEV_SECRETS]
        return [
            # Survey links signed with the public dev value never verify on a prod collector.
            SecretCheck.of("CSAT_SIGNING_SECRET", self.signing_secret, public_values=public),
            *self.identity_secret_checks(public_values=public),
        ]
