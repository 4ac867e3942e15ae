"""Console settings: dev works out of the box; prod names every missing secret, refuses insecure choices."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from services.console.settings import DEV_SESSION_SECRET, ConsoleSettings
from shared.identity.keygen import production_secrets


def settings(**values: Any) -> ConsoleSettings:
    return ConsoleSettings.model_validate(values)


def prod_values() -> dict[str, Any]:
    secrets = production_secrets()
    return {
        "environment": "prod",
        "public_url": "https://console.example.com",
        "admin_api_key": secrets["CSAT_BOOTSTRAP_ADMIN_KEY"],
        "session_secret": secrets["CSAT_SESSION_SECRET"],
        "identity_signing_key": secrets["CSAT_IDENTITY_SIGNING_KEY"],
        "identity_public_keys": secrets["CSAT_IDENTITY_PUBLIC_KEYS"],
        "address_hash_key": secrets["CSAT_ADDRESS_HASH_KEY"],
    }


def test_the_environment_must_be_said() -> None:
    with pytest.raises(ValidationError, match="CSAT_ENVIRONMENT must be set"):
        ConsoleSettings.model_validate({})


def test_dev_runs_with_development_values_and_plain_cookies() -> None:
    cfg = settings(environment="dev")
    assert cfg.port == 8004 and not cfg.secure_cookies and cfg.session_key == DEV_SESSION_SECRET.encode()
    assert cfg.signing_key().kid != cfg.signing_key().kid  # a fresh key each start, trusted by nobody else
    assert settings(environment="test").secure_cookies


def test_prod_names_every_missing_secret_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        settings(environment="prod", public_url="https://console.example.com", admin_api_key="x" * 40)
    message = str(refused.value)
    for name in (
        "CSAT_SESSION_SECRET",
        "CSAT_IDENTITY_SIGNING_KEY",
        "CSAT_ADDRESS_HASH_KEY",
        "CSAT_IDENTITY_PUBLIC_KEYS",
    ):
        assert name in message


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"session_secret": DEV_SESSION_SECRET}, "CSAT_SESSION_SECRET (the public development value)"),
        ({"cookie_secure": False}, "CSAT_COOKIE_SECURE cannot be false"),
        ({"public_url": "http://console.example.com"}, "CSAT_PUBLIC_URL must be"),
        (
            {"oidc_issuer": "http://idp.example.com", "oidc_client_id": "c"},
            "CSAT_OIDC_ISSUER must be an https",
        ),
        ({"identity_signing_key": '{"kty": "oct"}'}, "CSAT_IDENTITY_SIGNING_KEY"),
    ],
)
def test_prod_refuses_weak_or_insecure_settings(change: dict[str, Any], why: str) -> None:
    with pytest.raises(ValidationError, match=why.replace("(", r"\(").replace(")", r"\)")):
        settings(**{**prod_values(), **change})


def test_prod_starts_with_the_generated_secrets() -> None:
    cfg = settings(**prod_values(), oidc_issuer="https://idp.example.com", oidc_client_id="csat-console")
    assert cfg.secure_cookies and cfg.base_url == "https://console.example.com"
    assert cfg.signing_key().kid == cfg.signing_key().kid


def test_an_issuer_needs_a_client_id_and_urls_are_checked() -> None:
    with pytest.raises(ValidationError, match="CSAT_OIDC_CLIENT_ID"):
        settings(environment="dev", oidc_issuer="http://127.0.0.1:9999")
    with pytest.raises(ValidationError, match="http"):
        settings(environment="dev", scorer_url="scorer:8001")
    with pytest.raises(ValidationError, match="time zone"):
        settings(environment="dev", time_zone="Mars/Olympus")
