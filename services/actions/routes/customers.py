"""The customers API: the context the rules read, set by a CRM sync (``customers:admin``) and read by
CSMs (``customers:read``, their own customers only: another customer answers 404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import EmailStr, Field

from services.actions.deps import ActionsDeps
from services.actions.routes.auditing import record
from shared.http import problem
from shared.identity.ports import AuditAction
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.vocabulary import ContactIn

NOT_FOUND = "no context stored for this customer"


class CustomerProfileIn(ContactIn):
    """Context the rules use: contact details, value and tier, owner CSM, consent and opt-out."""

    tier: str | None = Field(default=None, max_length=40)
    value: float | None = Field(default=None, ge=0)
    owner_email: EmailStr | None = None
    owner_name: str | None = Field(default=None, max_length=200)
    consent: dict[str, bool] = Field(default_factory=dict, description="contact, review, ...")
    opted_out: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict, description="usage signals and any other facts")


def owns_customer(principal: Principal, found: dict[str, Any]) -> bool:
    attributes = found.get("attributes")
    account = attributes.get("account_id") if isinstance(attributes, dict) else None
    owner = found.get("owner_email")
    return principal.owns(
        account_id=account if isinstance(account, str) else None,
        owner_email=owner if isinstance(owner, str) else None,
    )


def router(deps: ActionsDeps) -> APIRouter:
    api = APIRouter(tags=["customers"])
    tx = deps.transactions
    admin = Depends(deps.auth.require(Scope.CUSTOMERS_ADMIN))
    reader = Depends(deps.auth.require(Scope.CUSTOMERS_READ))

    @api.put("/v1/customers/{customer_id}", summary="Set a customer's context (customers:admin)")
    async def put_customer(
        request: Request,
        body: CustomerProfileIn,
        customer_id: Annotated[str, Path(min_length=1, max_length=200)],
        principal: Principal = admin,
    ) -> Any:
        async with tx.begin() as stores:
            await stores.customers.upsert(customer_id=customer_id, fields=body.model_dump(mode="json"))
            if body.opted_out:
                await stores.enrolments.stop_all(customer_id=customer_id)
            stored = await stores.customers.get(customer_id=customer_id)
        await record(
            deps,
            request,
            principal,
            AuditAction.CUSTOMER_UPDATE,
            target=deps.customer_ref(customer_id),
            details={"opted_out": body.opted_out},
        )
        return stored

    @api.get("/v1/customers/{customer_id}", summary="A customer's stored context (a CSM's own customers)")
    async def get_customer(customer_id: str, principal: Principal = reader) -> Any:
        async with tx.connect() as stores:
            found = await stores.customers.get(customer_id=customer_id)
        if found is None or not owns_customer(principal, found):
            return problem(404, "Not Found", detail=NOT_FOUND)
        return found

    return api
