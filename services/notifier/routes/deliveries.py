"""Delivery records: one notification's by its id (``deliveries:read``; a CSM only for the accounts they
own, any other answers 404: the ids can be computed from a rating id), lists for roles that see every
account, or one customer's (``customer_id=``) for whoever owns that customer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from services.notifier.deps import NotifierDeps
from shared.http import problem
from shared.identity.principal import Principal
from shared.identity.scopes import Scope

NOT_FOUND = "no delivery for this notification id"
NOT_OWNED = "no such customer"


def _account(row: Mapping[str, Any]) -> str | None:
    account = row.get("account_id")
    return account if isinstance(account, str) else None


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
        summary="Delivery records by status or customer, newest first (e.g. failed or unknown ones to "
        "review); deliveries:read and a role that sees every account, or with customer_id= that "
        "customer owned",
    )
    async def list_deliveries(
        status: Literal["pending", "sending", "sent", "failed", "suppressed", "unknown"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        customer_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        principal: Principal = reader,
    ) -> Any:
        if customer_id is None and not principal.sees_all_accounts:
            return problem(
                403, "Forbidden", detail="listing every delivery needs a role that sees every account"
            )
        if not principal.sees_all_accounts:
            # A customer is owned when one of its messages names an account the caller owns (as the
            # scorer's customer history decides, whatever the status filter); any other answers 404.
            every = await deps.deliveries.deliveries(status=None, limit=500, customer_id=customer_id)
            if not any(principal.owns(account_id=_account(row)) for row in every.deliveries):
                return problem(404, "Not Found", detail=NOT_OWNED)
        page = await deps.deliveries.deliveries(status=status, limit=limit, customer_id=customer_id)
        return {"deliveries": page.deliveries, "counts": page.counts}

    return routes
