"""The Customer view: one customer's ratings and their trend, comments, alerts, the messages sent and
their delivery, consent and opt-out, account tier and value.

``/customers`` opens a customer by id; ``/customers/{id}`` is the page. Scope ``customers:read``
(CSMs, managers, admins); a CSM reads only customers they own (``customerview.readable_by``), anyone
else's answers 404 as if absent. Export and erasure (admins) belong to the GDPR work: the page keeps
their place.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.console import alertview, customerview
from services.console.apiclient import ApiError, PersonApi, Service
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.web import PageError, not_found
from shared.identity.scopes import Role, Scope

CustomerId = Annotated[str, Path(min_length=1, max_length=customerview.CUSTOMER_ID_MAX)]


async def _optional(api: PersonApi, service: Service, path: str, **kw: Any) -> Any:
    """One part of the page: absent (404) is None; any other refusal makes the page unavailable."""
    try:
        return await api.get_json(service, path, **kw)
    except ApiError as exc:
        if exc.status == 404:
            return None
        if exc.status == 403:
            raise PageError(403, "error.forbidden_title", "error.forbidden") from None
        raise PageError(503, "error.unavailable_title", "error.unavailable") from None


async def load(api: PersonApi, customer_id: str) -> customerview.CustomerPage:
    ids = {"customer_id": customer_id}
    context, history, alerts, deliveries = await asyncio.gather(
        _optional(api, "actions", "/v1/customers/{customer_id}", path_params=ids),
        _optional(
            api,
            "scorer",
            "/v1/customers/{customer_id}/history",
            path_params=ids,
            params={"limit": customerview.HISTORY_LIMIT},
        ),
        _optional(api, "actions", "/v1/alerts", params={"customer_id": customer_id, "limit": 100}),
        _optional(api, "notifier", "/v1/deliveries", params={"customer_id": customer_id, "limit": 100}),
    )
    return customerview.assemble(
        customer_id,
        context=context,
        history=history,
        alerts=(alerts or {}).get("alerts") or [],
        deliveries=deliveries,
    )


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.CUSTOMERS_READ))

    @r.get("/customers")
    async def customers(
        request: Request,
        id: Annotated[str | None, Query(max_length=customerview.CUSTOMER_ID_MAX)] = None,
        person: SignedIn = reader,
    ) -> Response:
        wanted = (id or "").strip()
        if wanted:
            target = request.url_for("customer", customer_id=wanted).path
            return RedirectResponse(target, status_code=303)
        return deps.pages.render(request, "customers.html")

    @r.get("/customers/{customer_id:path}", name="customer")
    async def customer(request: Request, customer_id: CustomerId, person: SignedIn = reader) -> Response:
        page = await load(deps.api.on_behalf_of(person), customer_id)
        if not customerview.readable_by(person.principal, page):
            raise not_found()
        return deps.pages.render(
            request,
            "customer.html",
            c=page,
            cv=customerview,
            av=alertview,
            chart=customerview.chart(page.ratings),
            now=deps.clock(),
            is_admin=person.user.role is Role.ADMIN,
        )

    return r
