"""Settings every service shares: the environment is never assumed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import CommonSettings


def test_no_environment_means_no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CSAT_ENVIRONMENT", raising=False)
    with pytest.raises(ValidationError, match="CSAT_ENVIRONMENT must be set to dev, test or prod"):
        CommonSettings()
    with pytest.raises(ValidationError, match="not 'staging'"):
        CommonSettings(environment="staging")
    assert CommonSettings(environment="prod").environment == "prod"
