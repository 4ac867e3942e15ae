"""Notifier settings: provider credentials are required when chosen, dev secrets refused in prod."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.notifier.settings import NotifierSettings
from tests.credentials import prod_secrets


def make(**values: Any) -> NotifierSettings:
    return NotifierSettings.model_validate({"environment": "test", **values})


@pytest.mark.parametrize(
    ("values", "missing"),
    [
        ({"email_provider": "sendgrid"}, "CSAT_SENDGRID_API_KEY"),
        ({"email_provider": "mailgun", "mailgun_api_key": "k"}, "CSAT_MAILGUN_DOMAIN"),
        ({"email_provider": "postmark"}, "CSAT_POSTMARK_SERVER_TOKEN"),
        (
            {"sms_provider": "twilio", "twilio_account_sid": "AC1", "twilio_auth_token": "t"},
            "CSAT_TWILIO_FROM",
        ),
        ({"sms_provider": "twilio", "twilio_from": "+15005550006"}, "CSAT_TWILIO_ACCOUNT_SID"),
        ({"webhook_provider": "webhook"}, "CSAT_WEBHOOK_SECRET"),
    ],
)
def test_a_chosen_provider_needs_its_credentials(values: dict[str, Any], missing: str) -> None:
    with pytest.raises(ValidationError, match=missing):
        make(**values)


def test_defaults_use_the_local_outbox_and_need_no_secret() -> None:
    cfg = make()
    assert (cfg.email_provider, cfg.sms_provider, cfg.chat_provider, cfg.webhook_provider) == ("outbox",) * 4
    assert cfg.quiet_window is not None and str(cfg.quiet_window.start) == "21:00:00"


def test_prod_refuses_the_dev_unsubscribe_secret_and_plain_http_links() -> None:
    secrets = {k: v for k, v in prod_secrets().items() if k != "unsubscribe_secret"}
    prod = {"environment": "prod", **secrets}
    with pytest.raises(ValidationError, match=r"CSAT_UNSUBSCRIBE_SECRET \(the public development value\)"):
        make(**prod, public_base_url="https://notify.example.com")
    real = "K7pQ2vX9mR4tL8wZ3nB6yH1jF5dS0aGe"
    with pytest.raises(ValidationError, match="https"):
        make(**prod, unsubscribe_secret=real, public_base_url="http://notify.example.com")
    ok = make(**prod, unsubscribe_secret=real, public_base_url="https://notify.example.com")
    assert ok.unsubscribe_secrets == [real]


@pytest.mark.parametrize(
    ("field", "value"), [("quiet_hours", "late-early"), ("default_timezone", "Mars/Base")]
)
def test_bad_send_rules_stop_the_service_at_start(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        make(**{field: value})


def test_secrets_do_not_show_in_the_settings_repr() -> None:
    cfg = make(email_provider="sendgrid", sendgrid_api_key="SG.very-secret")
    assert "SG.very-secret" not in repr(cfg)
