"""One past revision of the rules, whole, so that two revisions can be compared (``rules:read``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from services.actions.deps import ActionsDeps
from shared.auth import admin_guard
from shared.http import problem


def router(deps: ActionsDeps) -> APIRouter:
    api = APIRouter(tags=["rules"], dependencies=[Depends(admin_guard(deps.settings.admin_api_key))])
    tx = deps.transactions

    @api.get("/v1/rules/versions/{version}", summary="One revision of the rules, as it was saved")
    async def get_rule_version(version: Annotated[int, Path(ge=1)]) -> Any:
        async with tx.connect() as stores:
            stored = await stores.rule_sets.load(version=version)
        if stored is None:
            return problem(404, "Not Found", detail=f"no revision {version}")
        document = stored.document if isinstance(stored.document, dict) else {}
        return {
            "revision": stored.version,
            "origin": stored.origin,
            "author": stored.author,
            "created_at": stored.created_at.isoformat() if stored.created_at else None,
            **document,
        }

    return api
