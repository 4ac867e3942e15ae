"""One past revision of the rules, whole, so that two revisions can be compared (``rules:read``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from services.actions.deps import ActionsDeps
from shared.http import problem
from shared.identity.principal import Principal
from shared.identity.scopes import Scope


def router(deps: ActionsDeps) -> APIRouter:
    api = APIRouter(tags=["rules"])
    tx = deps.transactions
    reader = Depends(deps.auth.require(Scope.RULES_READ))

    @api.get("/v1/rules/versions/{version}", summary="One revision of the rules, as it was saved")
    async def get_rule_version(version: Annotated[int, Path(ge=1)], principal: Principal = reader) -> Any:
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
