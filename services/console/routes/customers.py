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

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from services.console import alertview, customerview, gdpr
from services.console.apiclient import ApiError, PersonApi, Service
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.ports import EventsUnavailable
from services.console.web import PageError, not_found
from shared.identity.ports import AuditAction, AuditOutcome
from shared.identity.scopes import Scope

CustomerId = Annotated[str, Path(min_length=1, max_length=customerview.CUSTOMER_ID_MAX)]
ErasureId = Annotated[str, Path(pattern=r"^er_[0-9a-f]{32}$")]


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


async def load_health(api: PersonApi, customer_id: str, page: customerview.CustomerPage) -> Any:
    """The health of the customer's account (or of the customer alone); None before any is computed."""
    kind, subject = customerview.health_subject(customer_id, page)
    body = await _optional(
        api,
        "actions",
        "/v1/accounts/{account_id}/health",
        path_params={"account_id": subject},
        params={"kind": kind},
    )
    return customerview.health_of(kind, subject, body)


def unavailable() -> PageError:
    return PageError(503, "error.unavailable_title", "error.unavailable")


def _links(request: Request, customer_id: str) -> dict[str, str]:
    page = request.url_for("customer", customer_id=customer_id).path
    return {"customer": page, "export": page + "/export", "erase": page + "/erase"}


def _credential(deps: ConsoleDeps, person: SignedIn) -> str:
    return "Bearer " + deps.api.tokens.current(person.session_key, person.principal)


def _erase_form(
    deps: ConsoleDeps, request: Request, customer_id: str, *, typed: str = "", wrong: bool = False
) -> Response:
    return deps.pages.render(
        request,
        "customer_erase.html",
        status=400 if wrong else 200,
        customer_id=customer_id,
        typed=typed,
        wrong=wrong,
        links=_links(request, customer_id),
    )


def router(deps: ConsoleDeps) -> APIRouter:
    """The search form, the GDPR routes, then the page, last: its ``{customer_id:path}`` matches theirs."""
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.CUSTOMERS_READ))
    # Export and erasure: the scope is checked here (a 403 page for anyone else) and again by each
    # service, which receives the admin's own access token.
    eraser = Depends(deps.gate.person(Scope.CUSTOMERS_READ, Scope.GDPR_ADMIN))
    csrf = [Depends(deps.gate.csrf)]

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

    _export_route(r, deps, eraser=eraser, csrf=csrf)
    _erasure_routes(r, deps, eraser=eraser, csrf=csrf)

    @r.get("/customers/{customer_id:path}", name="customer")
    async def customer(request: Request, customer_id: CustomerId, person: SignedIn = reader) -> Response:
        api = deps.api.on_behalf_of(person)
        page = await load(api, customer_id)
        if not customerview.readable_by(person.principal, page):
            raise not_found()
        health = await load_health(api, customer_id, page)
        return deps.pages.render(
            request,
            "customer.html",
            c=page,
            cv=customerview,
            av=alertview,
            chart=customerview.chart(page.ratings),
            health=health,
            links=_links(request, page.customer_id),
            now=deps.clock(),
            can_erase=not person.principal.missing(frozenset({Scope.GDPR_ADMIN})),
        )

    return r


def _export_route(r: APIRouter, deps: ConsoleDeps, *, eraser: Any, csrf: list[Any]) -> None:
    """The customer's data as one JSON download, audited (done or failed)."""

    @r.post("/customers/{customer_id:path}/export", dependencies=csrf)
    async def export(request: Request, customer_id: CustomerId, person: SignedIn = eraser) -> Response:
        try:
            document = await gdpr.export_document(deps, customer_id, _credential(deps, person))
        except ApiError:
            await gdpr.audit(
                deps,
                request,
                person.principal,
                AuditAction.GDPR_EXPORT,
                target=customer_id,
                outcome=AuditOutcome.FAILED,
            )
            raise unavailable() from None
        await gdpr.audit(deps, request, person.principal, AuditAction.GDPR_EXPORT, target=customer_id)
        return JSONResponse(
            document,
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": 'attachment; filename="customer-export.json"',
            },
        )


def _erasure_routes(r: APIRouter, deps: ConsoleDeps, *, eraser: Any, csrf: list[Any]) -> None:
    """The erasure form, the request (typed confirmation, audited) and its progress page."""

    @r.get("/customers/{customer_id:path}/erase", name="customer_erase")
    async def erase_page(request: Request, customer_id: CustomerId, person: SignedIn = eraser) -> Response:
        return _erase_form(deps, request, customer_id)

    @r.post("/customers/{customer_id:path}/erase", dependencies=csrf)
    async def erase(
        request: Request,
        customer_id: CustomerId,
        confirm: Annotated[str, Form(max_length=customerview.CUSTOMER_ID_MAX + 20)] = "",
        person: SignedIn = eraser,
    ) -> Response:
        if not customerview.confirmed(customer_id, confirm):
            return _erase_form(deps, request, customer_id, typed=confirm, wrong=True)
        erasure_id = gdpr.new_erasure_id()
        try:
            await gdpr.publish_erasure(
                deps,
                customer_id,
                _credential(deps, person),
                erasure_id=erasure_id,
                requested_by=person.principal.log_name,
            )
        except ApiError:
            raise unavailable() from None
        except EventsUnavailable:
            await gdpr.audit(
                deps,
                request,
                person.principal,
                AuditAction.GDPR_ERASE,
                target=erasure_id,
                outcome=AuditOutcome.FAILED,
            )
            raise unavailable() from None
        await gdpr.audit(deps, request, person.principal, AuditAction.GDPR_ERASE, target=erasure_id)
        target = request.url_for("customer_erasure", customer_id=customer_id, erasure_id=erasure_id).path
        return RedirectResponse(target, status_code=303)

    @r.get("/customers/{customer_id:path}/erasures/{erasure_id}", name="customer_erasure")
    async def erasure(
        request: Request,
        customer_id: CustomerId,
        erasure_id: ErasureId,
        part: Annotated[str | None, Query(max_length=10)] = None,
        person: SignedIn = eraser,
    ) -> Response:
        found = await gdpr.erasure_status(deps, erasure_id)
        return deps.pages.render(
            request,
            "_erasure_status.html" if part == "status" else "customer_erasure.html",
            customer_id=customer_id,
            erasure=found,
            here=request.url.path,
            cv=customerview,
            links=_links(request, customer_id),
        )
