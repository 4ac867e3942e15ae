"""The local outbox for people trying the stack: what would have been sent, newest first.

Message bodies quote customers' comments and carry unsubscribe links, so it needs ``outbox:read``
(admins) like everything else that holds personal data.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.notifier.deps import NotifierDeps
from shared.identity.principal import Principal
from shared.identity.scopes import Scope


def router(deps: NotifierDeps) -> APIRouter:
    routes = APIRouter()
    reader = Depends(deps.auth.require(Scope.OUTBOX_READ))

    @routes.get(
        "/v1/outbox",
        tags=["outbox"],
        summary="Messages delivered to the local outbox, newest first (outbox:read)",
    )
    async def get_outbox(
        recipient: str | None = None,
        rule_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        principal: Principal = reader,
    ) -> Any:
        items = await deps.deliveries.outbox_messages(recipient=recipient, rule_id=rule_id, limit=limit)
        return {"messages": items}

    return routes
