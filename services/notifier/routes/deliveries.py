"""Delivery records: one notification's by its id (``deliveries:read``; a CSM only for the accounts they
own, any other answers 404: the ids can be computed from a rating id), lists for roles that see every
account."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from services.notifier.deps import NotifierDeps
from shared.http import problem
from shared.identity.principal import Principal
from shared.identity.scopes import Scope

NOT_FOUND = "no delivery for this notification id"


def router(deps: NotifierDeps) -> APIRouter:
    routes = APIRouter()
    reader = Depends(deps.auth.require(Scope.DELIVERIES_READ))

    @routes.get(
        "/v1/deliveries/{notification_id}",
        tags=["deliveries"],
        summary="The delivery record of one notification",
    )
    async def get_delivery(notification_id: str, principal: Principal = reader) -> Any:
        row = await deps.deliveries.delivery(notification_id=notification_id)
        account = row.get("account_id") if row is not None else None
        if row is None or not principal.owns(account_id=account if isinstance(account, str) else None):
            return problem(404, "Not Found", detail=NOT_FOUND)
        return row

    @routes.get(
        "/v1/deliveries",
        tags=["deliveries"],
        summary="Delivery records by status, newest first (e.g. failed or unknown ones to review); "
        "deliveries:read and a role that sees every account",
    )
    async def list_deliveries(
        status: Literal["pending", "sending", "sent", "failed", "suppressed", "unknown"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        principal: Principal = reader,
    ) -> Any:
        if not principal.sees_all_accounts:
            return problem(
                403, "Forbidden", detail="listing every delivery needs a role that sees every account"
            )
        page = await deps.deliveries.deliveries(status=status, limit=limit)
        return {"deliveries": page.deliveries, "counts": page.counts}

    return routes
