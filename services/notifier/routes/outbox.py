"""The local outbox for people trying the stack: what would have been sent, newest first (no key needed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.notifier.deps import NotifierDeps


def router(deps: NotifierDeps) -> APIRouter:
    routes = APIRouter()

    @routes.get("/v1/outbox", tags=["outbox"], summary="Messages delivered to the local outbox, newest first")
    async def get_outbox(
        recipient: str | None = None,
        rule_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        items = await deps.deliveries.outbox_messages(recipient=recipient, rule_id=rule_id, limit=limit)
        return {"messages": items}

    return routes
