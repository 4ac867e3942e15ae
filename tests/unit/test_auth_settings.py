"""Admin key checks and the refusal of development secrets in production."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from shared.auth import admin_guard, presented_key
from shared.http import install_common
from shared.settings import CommonSettings


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "key"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer  abc ", None, "abc"),
        (None, "k1", "k1"),
        ("Basic xyz", None, None),
        (None, None, None),
    ],
)
def test_presented_key(authorization: str | None, x_api_key: str | None, key: str | None) -> None:
    assert presented_key(authorization, x_api_key) == key


def test_guard_answers_401_then_403_then_passes() -> None:
    app = FastAPI()
    install_common(app, service="t", checks={})

    @app.get("/admin", dependencies=[Depends(admin_guard(SecretStr("s3cret")))])
    async def admin() -> dict[str, str]:
        return {"ok": "yes"}

    client = TestClient(app)
    missing = client.get("/admin")
    assert missing.status_code == 401
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert client.get("/admin", headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.get("/admin", headers={"X-API-Key": "s3cret"}).json() == {"ok": "yes"}


def test_prod_refuses_the_dev_admin_key() -> None:
    with pytest.raises(ValidationError, match="CSAT_ADMIN_API_KEY"):
        CommonSettings(environment="prod")
    assert CommonSettings(environment="prod", admin_api_key=SecretStr("real")).environment == "prod"
