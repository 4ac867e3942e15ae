"""Settings helpers: no environment by default, and prod naming every missing or weak secret at once."""

from __future__ import annotations

import json
import shlex
from typing import Any, Literal

import pytest
from pydantic import SecretStr, ValidationError, model_validator
from pydantic_settings import SettingsConfigDict

from shared.identity import keygen
from shared.identity.accesstokens import SigningKey
from shared.identity.config import (
    IdentitySettings,
    SecretCheck,
    check_environment_present,
    refuse_weak_secrets,
    secret_weakness,
    weak_secrets,
)
from shared.settings import DEV_ADMIN_KEY

STRONG = "Vq3-xL9_pR2mZ8kT4wY7nB1cF6hJ0sDe"  # 32 characters, as token_urlsafe(24) gives
STRONG_2 = "Hx5-Kd2_Lm8Qw1Er9Ty4Ui7Op3As6Df0G"


class ServiceSettings(IdentitySettings):
    """How a service's settings will combine the helpers in phase 2 (a stand-in for CommonSettings)."""

    model_config = SettingsConfigDict(env_prefix="CSAT_", extra="ignore", populate_by_name=True)

    environment: Literal["dev", "test", "prod"]
    signing_secret: SecretStr | None = None

    _environment = model_validator(mode="before")(check_environment_present)

    @model_validator(mode="after")
    def _secrets(self) -> ServiceSettings:
        refuse_weak_secrets(
            environment=self.environment,
            checks=[
                SecretCheck.of(
                    "CSAT_SIGNING_SECRET", self.signing_secret, public_values=["dev-signing-secret"]
                ),
                *self.identity_secret_checks(public_values=[DEV_ADMIN_KEY]),
            ],
        )
        return self


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CSAT_ENVIRONMENT",
        "CSAT_ADMIN_API_KEY",
        "CSAT_BOOTSTRAP_ADMIN_KEY",
        "CSAT_ADDRESS_HASH_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_environment_means_no_start(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is not None:
        monkeypatch.setenv("CSAT_ENVIRONMENT", value)
    with pytest.raises(ValidationError, match="CSAT_ENVIRONMENT must be set to dev, test or prod"):
        ServiceSettings()


def test_an_unknown_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="not 'production'"):
        ServiceSettings()


def test_dev_starts_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_ENVIRONMENT", "dev")
    assert ServiceSettings().environment == "dev"


def test_prod_names_every_missing_secret_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_ENVIRONMENT", "prod")
    monkeypatch.setenv("CSAT_ADMIN_API_KEY", DEV_ADMIN_KEY)  # the old variable still feeds the bootstrap key
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(address_hash_previous_keys=[SecretStr("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")])
    message = str(caught.value)
    for expected in (
        "CSAT_SIGNING_SECRET (missing)",
        "CSAT_BOOTSTRAP_ADMIN_KEY (the public development value)",
        "CSAT_ADDRESS_HASH_KEY (missing)",
        "CSAT_ADDRESS_HASH_PREVIOUS_KEYS[0] (not random (too few distinct characters))",
        "CSAT_IDENTITY_PUBLIC_KEYS (missing)",
        "secrets.token_urlsafe(32)",
    ):
        assert expected in message


def test_prod_starts_with_generated_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_ENVIRONMENT", "prod")
    key = SigningKey.generate()
    settings = ServiceSettings(
        signing_secret=SecretStr(STRONG),
        bootstrap_admin_key=SecretStr(STRONG_2),
        address_hash_key=SecretStr(STRONG[::-1]),
        identity_public_keys=json.dumps({"keys": [key.public_jwk()]}),
    )
    assert settings.environment == "prod"
    verifier = settings.access_verifier()
    assert verifier is not None and list(verifier.keys.keys) == [key.kid]
    hasher = settings.address_hasher()
    assert hasher is not None and hasher.email("a@b.c") != ""
    assert settings.outbound_policy(settings.environment).https_only


def test_without_keys_no_person_token_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CSAT_ENVIRONMENT", "test")
    settings = ServiceSettings()
    assert settings.access_verifier() is None and settings.address_hasher() is None
    assert not settings.outbound_policy(settings.environment).https_only


@pytest.mark.parametrize(
    ("check", "weakness"),
    [
        (SecretCheck("X", None), "missing"),
        (SecretCheck("X", "   "), "missing"),
        (SecretCheck("X", None, required=False), None),
        (
            SecretCheck("X", "dev-admin-key", public_values=frozenset({"dev-admin-key"})),
            "the public development value",
        ),
        (SecretCheck("X", STRONG[:31]), "shorter than 32 characters"),
        (SecretCheck("X", "a" * 40), "not random (too few distinct characters)"),
        (SecretCheck("X", "passwordpasswordpasswordpassword"), "not random (too few distinct characters)"),
        (
            SecretCheck("X", "abcdefghij" + "z" * 22),
            "not random (too few distinct characters)",
        ),  # one char > 25 %
        (SecretCheck("X", STRONG), None),
        (
            SecretCheck("X", "3f9a0c47d2b18e6593f9a0c47d2b18e6"),
            None,
        ),  # 32 hex characters (openssl rand -hex 16)
    ],
)
def test_secret_weakness(check: SecretCheck, weakness: str | None) -> None:
    assert secret_weakness(check) == weakness


def test_dev_and_test_accept_anything_and_order_is_kept() -> None:
    checks = [SecretCheck("B", None), SecretCheck("A", "short")]
    assert weak_secrets(checks) == ["B (missing)", "A (shorter than 32 characters)"]
    for environment in ("dev", "test"):
        refuse_weak_secrets(environment=environment, checks=checks)


def test_check_environment_present_passes_other_inputs_through() -> None:
    data: dict[str, Any] = {"environment": "test", "x": 1}
    assert check_environment_present(data) is data


def test_keygen_prints_secrets_that_prod_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    assert keygen.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    values = {}
    for line in lines:
        name, _, quoted = line.removeprefix("export ").partition("=")
        values[name] = shlex.split(quoted)[0]
    assert set(values) == {*keygen.RANDOM_SECRETS, "CSAT_IDENTITY_SIGNING_KEY", "CSAT_IDENTITY_PUBLIC_KEYS"}
    checks = [SecretCheck(name, values[name]) for name in keygen.RANDOM_SECRETS]
    assert weak_secrets(checks) == []
    key = SigningKey.from_jwk(values["CSAT_IDENTITY_SIGNING_KEY"])
    assert json.loads(values["CSAT_IDENTITY_PUBLIC_KEYS"]) == {"keys": [key.public_jwk()]}
    assert keygen.main(["--signing-key"]) == 0
    assert [line.split("=", 1)[0] for line in capsys.readouterr().out.splitlines()] == [
        "export CSAT_IDENTITY_SIGNING_KEY",
        "export CSAT_IDENTITY_PUBLIC_KEYS",
    ]
    assert keygen.main(["--signing-key", "--env-file"]) == 0
    env_lines = capsys.readouterr().out.splitlines()
    assert [line.split("=", 1)[0] for line in env_lines] == [
        "CSAT_IDENTITY_SIGNING_KEY",
        "CSAT_IDENTITY_PUBLIC_KEYS",
    ]
    assert SigningKey.from_jwk(env_lines[0].split("=", 1)[1]).kid
    assert keygen.main(["--nope"]) == 2
