"""The customers API (admin): the context the rules read, set by a CRM sync or by hand."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import EmailStr, Field

from services.actions.deps import ActionsDeps
from shared.auth import admin_guard
from shared.http import problem
from shared.vocabulary import ContactIn


class CustomerProfileIn(ContactIn):
    """Context the rules use: contact details, value and tier, owner CSM, consent and opt-out."""

    tier: str | None = Field(default=None, max_length=40)
    value: float | None = Field(default=None, ge=0)
    owner_email: EmailStr | None = None
    owner_name: str | None = Field(default=None, max_length=200)
    consent: dict[str, bool] = Field(default_factory=dict, description="contact, review, ...")
    opted_out: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict, description="usage signals and any other facts")


def router(deps: ActionsDeps) -> APIRouter:
    api = APIRouter(tags=["customers"], dependencies=[Depends(admin_guard(deps.settings.admin_api_key))])
    tx = deps.transactions

    @api.put("/v1/customers/{customer_id}", summary="Set a customer's context")
    async def put_customer(
        body: CustomerProfileIn, customer_id: Annotated[str, Path(min_length=1, max_length=200)]
    ) -> Any:
        async with tx.begin() as stores:
            await stores.customers.upsert(customer_id=customer_id, fields=body.model_dump(mode="json"))
            if body.opted_out:
                await stores.enrolments.stop_all(customer_id=customer_id)
            return await stores.customers.get(customer_id=customer_id)

    @api.get("/v1/customers/{customer_id}", summary="A customer's stored context")
    async def get_customer(customer_id: str) -> Any:
        async with tx.connect() as stores:
            found = await stores.customers.get(customer_id=customer_id)
        if found is None:
            return problem(404, "Not Found", detail="no context stored for this customer")
        return found

    return api
