"""Delivery records: one notification's by its id (for the systems that requested it), lists for admins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from services.notifier.deps import NotifierDeps
from shared.auth import admin_guard
from shared.http import problem


def router(deps: NotifierDeps) -> APIRouter:
    routes = APIRouter()
    admin = [Depends(admin_guard(deps.admin_key))]

    @routes.get(
        "/v1/deliveries/{notification_id}",
        tags=["deliveries"],
        summary="The delivery record of one notification",
    )
    async def get_delivery(notification_id: str) -> Any:
        row = await deps.deliveries.delivery(notification_id=notification_id)
        if row is None:
            return problem(404, "Not Found", detail="no delivery for this notification id")
        return row

    @routes.get(
        "/v1/deliveries",
        tags=["deliveries"],
        dependencies=admin,
        summary="Delivery records by status or customer, newest first (e.g. failed ones to review)",
    )
    async def list_deliveries(
        status: Literal["pending", "sending", "sent", "failed", "suppressed", "unknown"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        customer_id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    ) -> Any:
        page = await deps.deliveries.deliveries(status=status, limit=limit, customer_id=customer_id)
        return {"deliveries": page.deliveries, "counts": page.counts}

    return routes
