"""The CSM alerts API (admin or CSM key): the inbox, one alert, acknowledge (stops escalation), assign,
resolve."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr

from services.actions.deps import ActionsDeps
from services.actions.ports import AlertTransition
from shared.auth import presented_key
from shared.http import problem


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(default=None, max_length=200, description="Who acknowledges or resolves")
    note: str | None = Field(default=None, max_length=2000)


class AlertAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_email: EmailStr = Field(description="The new owner's address (who the alert is for)")
    owner_name: str | None = Field(default=None, max_length=200)
    by: str | None = Field(default=None, max_length=200, description="Who assigns")


def key_guard(*secrets: SecretStr | None) -> Callable[..., Awaitable[None]]:
    """Any of the given keys (admin, CSM) is accepted; 401 without a key, 403 with a wrong one."""
    expected = [s.get_secret_value().encode() for s in secrets if s is not None]

    async def guard(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    ) -> None:
        key = presented_key(authorization, x_api_key)
        if key is None:
            raise HTTPException(401, "an API key is required", headers={"WWW-Authenticate": "Bearer"})
        if not any(hmac.compare_digest(key.encode(), e) for e in expected):
            raise HTTPException(403, "this key may not use this endpoint")

    return guard


def router(deps: ActionsDeps) -> APIRouter:
    cfg, tx = deps.settings, deps.transactions
    api = APIRouter(tags=["alerts"], dependencies=[Depends(key_guard(cfg.admin_api_key, cfg.csm_api_key))])

    @api.get("/v1/alerts", summary="CSM alerts, newest first")
    async def get_alerts(
        status: Literal["open", "acknowledged", "resolved"] | None = None,
        owner: str | None = None,
        customer_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        async with tx.connect() as stores:
            items = await stores.alerts.search(
                status=status, owner=owner, customer_id=customer_id, limit=limit
            )
        return {"alerts": items}

    @api.get("/v1/alerts/{alert_id}", summary="One alert")
    async def get_alert(alert_id: str) -> Any:
        async with tx.connect() as stores:
            found = await stores.alerts.get(alert_id=alert_id)
        return found if found is not None else problem(404, "Not Found", detail="no such alert")

    async def transition(alert_id: str, body: AlertAction | None, to: str) -> Any:
        action = body or AlertAction()
        async with tx.begin() as stores:
            done = await stores.alerts.transition(
                alert_id=alert_id, to=to, by=action.by, note=action.note, now=deps.clock()
            )
        return answer(done)

    def answer(done: AlertTransition) -> Any:
        if done.error == "not_found":
            return problem(404, "Not Found", detail="no such alert")
        if done.error is not None:
            return problem(409, "Conflict", detail=f"the alert is {done.error}", alert=done.alert)
        return done.alert

    @api.post("/v1/alerts/{alert_id}/ack", summary="Acknowledge (stops the SLA escalation)")
    async def ack_alert(alert_id: str, body: AlertAction | None = None) -> Any:
        return await transition(alert_id, body, "acknowledged")

    @api.post("/v1/alerts/{alert_id}/resolve", summary="Resolve")
    async def resolve_alert(alert_id: str, body: AlertAction | None = None) -> Any:
        return await transition(alert_id, body, "resolved")

    @api.post(
        "/v1/alerts/{alert_id}/assign", summary="Assign to another owner (SLA and escalation unchanged)"
    )
    async def assign_alert(alert_id: str, body: AlertAssign) -> Any:
        async with tx.begin() as stores:
            done = await stores.alerts.assign(
                alert_id=alert_id,
                owner_email=str(body.owner_email),
                owner_name=body.owner_name,
                by=body.by,
                now=deps.clock(),
            )
        return answer(done)

    return api
