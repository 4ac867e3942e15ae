"""The accounts API: an account's owner and value (``customers:admin``), its health with the explanation
and history, and the at-risk list a CSM starts the day with, ranked by value x risk (``customers:read``;
a CSM sees only the accounts they own, by address or by account grant: any other answers 404)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.actions.deps import ActionsDeps
from services.actions.ports import Reach, Subject
from shared.http import problem
from shared.identity.principal import Principal
from shared.identity.scopes import Scope

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
    tx = deps.transactions
    reader = Depends(deps.auth.require(Scope.CUSTOMERS_READ))
    api = APIRouter(tags=["accounts"])

    def reach(principal: Principal) -> Reach | None:
        if principal.sees_all_accounts:
            return None
        return Reach(owner_email=principal.owner_email, accounts=principal.accounts)

    @api.put(
        "/v1/accounts/{account_id}",
        summary="Set an account's name, owner and value",
        dependencies=[Depends(deps.auth.require(Scope.CUSTOMERS_ADMIN))],
    )
    async def put_account(body: AccountIn, account_id: AccountId) -> Any:
        async with tx.begin() as stores:
            return await stores.health.upsert_account(
                account_id=account_id, fields=body.model_dump(mode="json")
            )

    @api.get(
        "/v1/accounts/at-risk",
        summary="At-risk and critical accounts, the most value at stake first (value x (100 - score))",
    )
    async def at_risk(
        owner: Annotated[str | None, Query(max_length=320, description="Only this CSM's accounts")] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        principal: Principal = reader,
    ) -> Any:
        async with tx.connect() as stores:
            items = await stores.health.at_risk(owner=owner, limit=limit, reach=reach(principal))
        return {"accounts": items}

    @api.get(
        "/v1/accounts/{account_id}/health",
        summary="An account's health: score, band, each component's points, history",
    )
    async def account_health(
        account_id: AccountId,
        kind: Literal["account", "customer"] = "account",
        principal: Principal = reader,
    ) -> Any:
        async with tx.read_only() as stores:  # one snapshot: the health, its account and its owner
            found = await stores.health.health(subject=Subject(kind, account_id))
            account = await stores.health.account(account_id=account_id) if kind == "account" else None
            owner = await stores.health.owner_of(subject=Subject(kind, account_id))
        owned = principal.owns(account_id=account_id if kind == "account" else None, owner_email=owner)
        if found is None or not owned:
            return problem(404, "Not Found", detail="no health computed for this account yet")
        return {**found, "account": account}

    return api
