"""What the rules did, for whoever investigates (``rules:read``): recent decisions and durable timers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from services.actions.deps import ActionsDeps
from shared.identity.principal import Principal
from shared.identity.scopes import Scope


def router(deps: ActionsDeps) -> APIRouter:
    # Tagged "rules" as these endpoints always were in the published API.
    api = APIRouter(tags=["rules"])
    tx = deps.transactions
    reader = Depends(deps.auth.require(Scope.RULES_READ))

    @api.get("/v1/decisions", summary="Recent rule decisions")
    async def get_decisions(
        customer_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        principal: Principal = reader,
    ) -> Any:
        async with tx.connect() as stores:
            return {"decisions": await stores.decisions.recent(customer_id=customer_id, limit=limit)}

    @api.get("/v1/timers", summary="Durable timers (SLA, re-survey, nurture)")
    async def get_timers(
        customer_id: str | None = None,
        status: Literal["pending", "fired", "cancelled"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        principal: Principal = reader,
    ) -> Any:
        async with tx.connect() as stores:
            return {"timers": await stores.timers.search(customer_id=customer_id, status=status, limit=limit)}

    return api
