"""The accounts API: an account's owner and value (admin), its health with the explanation and history,
and the at-risk list a CSM starts the day with (admin or CSM key), ranked by value x risk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.actions.deps import ActionsDeps
from services.actions.ports import Subject
from services.actions.routes.alerts import key_guard
from shared.auth import admin_guard
from shared.http import problem

AccountId = Annotated[str, Path(min_length=1, max_length=200)]


class AccountIn(BaseModel):
    """What the at-risk list and the health alert read about an account (a CRM sync sets it)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    owner_email: EmailStr | None = Field(default=None, description="The CSM who owns it")
    owner_name: str | None = Field(default=None, max_length=200)
    value: float | None = Field(default=None, ge=0, description="Yearly value: the at-risk list's weight")
    tier: str | None = Field(default=None, max_length=40)


def router(deps: ActionsDeps) -> APIRouter:
    cfg, tx = deps.settings, deps.transactions
    read = [Depends(key_guard(cfg.admin_api_key, cfg.csm_api_key))]
    api = APIRouter(tags=["accounts"])

    @api.put(
        "/v1/accounts/{account_id}",
        summary="Set an account's name, owner and value",
        dependencies=[Depends(admin_guard(cfg.admin_api_key))],
    )
    async def put_account(body: AccountIn, account_id: AccountId) -> Any:
        async with tx.begin() as stores:
            return await stores.health.upsert_account(
                account_id=account_id, fields=body.model_dump(mode="json")
            )

    @api.get(
        "/v1/accounts/at-risk",
        summary="At-risk and critical accounts, the most value at stake first (value x (100 - score))",
        dependencies=read,
    )
    async def at_risk(
        owner: Annotated[str | None, Query(max_length=320, description="Only this CSM's accounts")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        async with tx.connect() as stores:
            items = await stores.health.at_risk(owner=owner, limit=limit)
        return {"accounts": items}

    @api.get(
        "/v1/accounts/{account_id}/health",
        summary="An account's health: score, band, each component's points, history",
        dependencies=read,
    )
    async def account_health(account_id: AccountId, kind: Literal["account", "customer"] = "account") -> Any:
        async with tx.connect() as stores:
            found = await stores.health.health(subject=Subject(kind, account_id))
            account = await stores.health.account(account_id=account_id) if kind == "account" else None
        if found is None:
            return problem(404, "Not Found", detail="no health computed for this account yet")
        return {**found, "account": account}

    return api
