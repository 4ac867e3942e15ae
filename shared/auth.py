"""Admin authentication for management endpoints: a bearer key compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, HTTPException
from pydantic import SecretStr


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key else None


def admin_guard(secret: SecretStr) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency: 401 without a key, 403 with a wrong one."""
    expected = secret.get_secret_value().encode()

    async def guard(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    ) -> None:
        key = presented_key(authorization, x_api_key)
        if key is None:
            raise HTTPException(401, "an admin key is required", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(key.encode(), expected):
            raise HTTPException(403, "this key may not use admin endpoints")

    return guard
