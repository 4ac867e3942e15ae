"""The suppression list (``customers:admin``): who must not get customer-facing messages, by customer,
email or phone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, model_validator

from services.notifier.deps import NotifierDeps
from services.notifier.policy import AddressKeys
from services.notifier.ports import SuppressionEntry
from shared.http import problem
from shared.identity.auditing import record_change
from shared.identity.ports import AuditAction
from shared.identity.principal import Principal
from shared.identity.scopes import Scope


class SuppressionRequest(BaseModel):
    """Who must stop receiving customer-facing messages (any of the three)."""

    customer_id: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    reason: str = Field(default="admin", max_length=80)

    @model_validator(mode="after")
    def _one(self) -> SuppressionRequest:
        if not (self.customer_id or self.email or self.phone):
            raise ValueError("give a customer_id, an email or a phone")
        return self


def entries(
    keys: AddressKeys, customer_id: str | None, email: str | None, phone: str | None, *, stored: bool = False
) -> list[SuppressionEntry]:
    """The suppression-list entries naming this person (addresses by their keyed hash, never in clear).

    ``stored``: only the key a new entry is written under; otherwise every key an existing entry may
    have (older hash keys, the legacy unkeyed hash), so lookups and removals find them all.
    """
    out = []
    if customer_id:
        out.append(SuppressionEntry("customer", customer_id))
        if not stored:  # an erased customer's opt-out, re-keyed by the keyed hash of the id
            out += [SuppressionEntry("customer", key) for key in keys.customer_candidates(customer_id)]
    for scope, address in (("email", email), ("sms", phone)):
        if address:
            found = (keys.key(scope, address),) if stored else keys.candidates(scope, address)
            out += [SuppressionEntry(scope, key) for key in found]
    return out


async def _audited(
    deps: NotifierDeps,
    request: Request,
    principal: Principal,
    action: AuditAction,
    customer_id: str | None,
    **kinds: bool | int,
) -> None:
    """Which kinds of entry changed and how many, never the addresses (nor the customer's id)."""
    target = (
        "suppressions" if not customer_id else f"customer#{deps.address_keys.hasher.customer(customer_id)}"
    )
    await record_change(
        deps.audit,
        request,
        principal,
        action,
        service="notifier",
        at=datetime.now(UTC),
        target=target,
        details=kinds,
    )


def router(deps: NotifierDeps) -> APIRouter:
    """Read the list, then add and lift entries (all ``customers:admin``)."""
    routes = APIRouter()
    admin = [Depends(deps.auth.require(Scope.CUSTOMERS_ADMIN))]

    @routes.get("/v1/suppressions", tags=["suppressions"], dependencies=admin, summary="The suppression list")
    async def list_suppressions(
        customer_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        wanted = entries(deps.address_keys, customer_id, email, phone)
        items = await deps.suppressions.suppressions(entries=wanted, limit=limit)
        return {"suppressions": items}

    _change_routes(routes, deps)
    return routes


def _change_routes(routes: APIRouter, deps: NotifierDeps) -> None:
    """Add and lift suppressions, each change in the audit log."""
    changer = Depends(deps.auth.require(Scope.CUSTOMERS_ADMIN))

    @routes.post(
        "/v1/suppressions",
        tags=["suppressions"],
        status_code=201,
        summary="Stop customer-facing messages to a customer, an email address or a phone number",
    )
    async def add_suppression(
        request: Request, body: SuppressionRequest, principal: Principal = changer
    ) -> Any:
        added = await deps.suppressions.add_suppressions(
            entries=entries(deps.address_keys, body.customer_id, body.email, body.phone, stored=True),
            reason=body.reason,
            source="admin",
            customer_id=body.customer_id,
            notification_id=None,
        )
        await _audited(
            deps,
            request,
            principal,
            AuditAction.SUPPRESSION_ADD,
            body.customer_id,
            email=bool(body.email),
            phone=bool(body.phone),
            added=added,
        )
        return {"added": added}

    @routes.delete(
        "/v1/suppressions",
        tags=["suppressions"],
        summary="Lift a suppression (the person opted back in)",
    )
    async def remove_suppression(
        request: Request,
        customer_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        principal: Principal = changer,
    ) -> Any:
        wanted = entries(deps.address_keys, customer_id, email, phone)
        if not wanted:
            return problem(
                422,
                "Invalid request",
                detail="give a customer_id, an email or a phone",
                errors=[{"field": "customer_id", "message": "give a customer_id, an email or a phone"}],
            )
        removed = await deps.suppressions.remove_suppressions(entries=wanted)
        await _audited(
            deps,
            request,
            principal,
            AuditAction.SUPPRESSION_REMOVE,
            customer_id,
            email=bool(email),
            phone=bool(phone),
            removed=removed,
        )
        return {"removed": removed}
