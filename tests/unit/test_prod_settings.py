"""Prod refuses to start with missing or weak secrets and says, in one message, every one to fix; the
secrets ``python -m shared.identity.keygen`` prints are accepted by all five services."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from services.actions.settings import ActionsSettings
from services.collector.settings import CollectorSettings
from services.console.settings import ConsoleSettings
from services.notifier.settings import NotifierSettings
from services.scorer.settings import ScorerSettings

IDENTITY = ["CSAT_ADDRESS_HASH_KEY (missing)", "CSAT_IDENTITY_PUBLIC_KEYS (missing)"]
#: Per service: the settings prod needs besides secrets, and every secret it names when none is set.
SERVICES: dict[str, tuple[type[BaseSettings], dict[str, Any], list[str]]] = {
    "collector": (
        CollectorSettings,
        {},
        [
            "CSAT_SIGNING_SECRET (the public development value)",
            "CSAT_SOURCE_IDENTITY_KEY (the public development value)",
            *IDENTITY,
        ],
    ),
    "scorer": (ScorerSettings, {}, IDENTITY),
    "actions": (
        ActionsSettings,
        {"survey_link_base_url": "https://collect.example.com"},
        ["CSAT_SIGNING_SECRET (the public development value)", *IDENTITY],
    ),
    "notifier": (
        NotifierSettings,
        {"public_base_url": "https://notify.example.com"},
        ["CSAT_UNSUBSCRIBE_SECRET (the public development value)", *IDENTITY],
    ),
    "console": (
        ConsoleSettings,
        {"public_url": "https://console.example.com"},
        ["CSAT_SESSION_SECRET (missing)", "CSAT_IDENTITY_SIGNING_KEY (missing)", *IDENTITY],
    ),
}


def keygen_env_file() -> dict[str, str]:
    """What the documented command prints (``--env-file``: NAME=value lines), as settings fields."""
    out = subprocess.run(
        [sys.executable, "-m", "shared.identity.keygen", "--env-file"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    pairs = dict(line.split("=", 1) for line in out.splitlines() if line)
    return {name.removeprefix("CSAT_").lower(): value for name, value in pairs.items()}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_prod_names_every_missing_secret_at_once(service: str) -> None:
    cls, needs, missing = SERVICES[service]
    with pytest.raises(ValidationError) as refused:
        cls.model_validate({"environment": "prod", **needs})
    message = str(refused.value)
    assert "CSAT_ENVIRONMENT=prod refuses to start" in message
    for problem in missing:
        assert problem in message, f"{service}: {problem!r} not in {message}"
    assert "secrets.token_urlsafe(32)" in message  # and how to make one


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_weak_or_public_bootstrap_key_is_named_too(service: str) -> None:
    cls, needs, _ = SERVICES[service]
    secrets = keygen_env_file()
    for weak, why in (("dev-admin-key", "the public development value"), ("short-key", "shorter than 32")):
        with pytest.raises(ValidationError, match=rf"CSAT_BOOTSTRAP_ADMIN_KEY \({why}"):
            cls.model_validate({"environment": "prod", **needs, **secrets, "bootstrap_admin_key": weak})


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_generated_secrets_are_accepted(service: str) -> None:
    cls, needs, _ = SERVICES[service]
    cfg = cls.model_validate({"environment": "prod", **needs, **keygen_env_file()})
    assert cfg.model_dump()["environment"] == "prod"
    without_bootstrap = {k: v for k, v in keygen_env_file().items() if k != "bootstrap_admin_key"}
    cls.model_validate({"environment": "prod", **needs, **without_bootstrap})  # optional once people exist


def test_actions_refuses_survey_links_that_prod_mail_would_refuse() -> None:
    with pytest.raises(ValidationError, match="CSAT_SURVEY_LINK_BASE_URL must be the collector's https"):
        ActionsSettings.model_validate({"environment": "prod", **keygen_env_file()})
