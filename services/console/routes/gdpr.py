"""GDPR rights per customer (scope ``gdpr:admin``): erasure (art. 17) and export (art. 15/20).

Erase publishes one ``csat.customers.erased.v1`` event (202 once the broker's in-sync replicas have it);
each service's erasure consumer scrubs its own tables in one transaction with its offsets and records
its status under the erasure id, which ``GET /v1/gdpr/erasures/{id}`` reads back. Export asks each
service for what it holds and answers one JSON document. Both are audited; the erasure's audit entry
names the erasure id, not the customer (the audit log outlives the erasure).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from services.console.apiclient import ApiError, Service
from services.console.deps import ConsoleDeps
from services.console.people import SERVICE
from services.console.ports import EventsUnavailable
from services.console.web import client_ip
from shared import events as ev
from shared.envelope import encode
from shared.http import problem
from shared.identity.accounts import audit_entry
from shared.identity.ports import AuditAction, AuditOutcome
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.security.text import SafeLine
from shared.security.urls import fill_url_template

#: The services that hold customer data and erase it on the event (each writes ops.erasures).
ERASING: tuple[Service, ...] = ("collector", "scorer", "actions", "notifier")
EXPORT_PATH = "/v1/gdpr/customers/{customer_id}/export"
EXPORT_FORMAT = "csat-customer-export/1"

CustomerId = Annotated[SafeLine, Path(min_length=1, max_length=200)]
ErasureId = Annotated[SafeLine, Path(min_length=1, max_length=100, pattern=r"^er_[0-9a-f]{32}$")]


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(prefix="/v1/gdpr", tags=["gdpr"])
    gdpr_admin = Depends(deps.auth.require(Scope.GDPR_ADMIN))

    async def audit(
        request: Request,
        principal: Principal,
        action: AuditAction,
        *,
        target: str,
        outcome: AuditOutcome = AuditOutcome.OK,
        details: dict[str, Any] | None = None,
    ) -> None:
        await deps.identity.append_audit(
            entry=audit_entry(
                principal,
                action,
                service=SERVICE,
                at=deps.clock(),
                target=target,
                outcome=outcome,
                source_ip=client_ip(request, deps.settings.proxy_networks),
                details=details,
            )
        )

    @r.post(
        "/customers/{customer_id}/erase",
        status_code=202,
        summary="Erase a customer everywhere (GDPR art. 17): 202 once the erasure event is durable",
    )
    async def erase(request: Request, customer_id: CustomerId, principal: Principal = gdpr_admin) -> Any:
        try:
            opted_out = await _opted_out(deps, customer_id, request.headers.get("authorization"))
        except ApiError:
            detail = "actions did not answer; nothing was erased, try again"
            return problem(503, "Service Unavailable", detail=detail)
        erasure_id = "er_" + secrets.token_hex(16)
        event = ev.CustomerErased(
            erasure_id=erasure_id,
            customer_id=customer_id,
            pseudonym="erased_" + secrets.token_hex(16),
            requested_at=deps.clock(),
            requested_by=principal.log_name,
            opted_out=opted_out,
        )
        record = encode(
            topic=deps.settings.topics.customers_erased,
            event_type=ev.CUSTOMER_ERASED,
            source="/console",
            event_id=erasure_id,
            data=event,
            key=customer_id,
        )
        try:
            await deps.events.publish(record)
        except EventsUnavailable:
            await audit(
                request, principal, AuditAction.GDPR_ERASE, target=erasure_id, outcome=AuditOutcome.FAILED
            )
            return problem(
                503, "Service Unavailable", detail="the broker did not take the erasure; try again"
            )
        await audit(request, principal, AuditAction.GDPR_ERASE, target=erasure_id)
        return JSONResponse(
            status_code=202,
            content={
                "erasure_id": erasure_id,
                "status_url": f"/v1/gdpr/erasures/{erasure_id}",
                "services": list(ERASING),
            },
        )

    @r.get("/erasures/{erasure_id}", summary="Where an erasure stands, service by service")
    async def erasure_status(erasure_id: ErasureId, principal: Principal = gdpr_admin) -> Any:
        done = {d.service: d for d in await deps.console.erasure_status(erasure_id=erasure_id)}
        services = {
            name: (
                {
                    "status": "done",
                    "erased_at": done[name].erased_at.isoformat(),
                    "removed": done[name].removed,
                }
                if name in done
                else {"status": "pending"}
            )
            for name in ERASING
        }
        return {"erasure_id": erasure_id, "complete": set(done) >= set(ERASING), "services": services}

    @r.get(
        "/customers/{customer_id}/export",
        summary="Everything held about a customer (GDPR art. 15/20), one JSON document",
    )
    async def export(request: Request, customer_id: CustomerId, principal: Principal = gdpr_admin) -> Any:
        held: dict[str, Any] = {}
        for name in ERASING:
            try:
                held[name] = await _export_from(deps, name, customer_id, request.headers.get("authorization"))
            except ApiError as exc:
                await audit(
                    request,
                    principal,
                    AuditAction.GDPR_EXPORT,
                    target=customer_id,
                    outcome=AuditOutcome.FAILED,
                )
                return problem(
                    503,
                    "Service Unavailable",
                    detail=f"{name} did not answer its export ({exc.status}); nothing partial is returned",
                )
        await audit(request, principal, AuditAction.GDPR_EXPORT, target=customer_id)
        document = {
            "format": EXPORT_FORMAT,
            "customer_id": customer_id,
            "exported_at": deps.clock().isoformat(),
            "services": held,
        }
        return JSONResponse(
            document,
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": 'attachment; filename="customer-export.json"',
            },
        )

    return r


def _authorization(credential: str | None) -> str:
    """The credential the console presents to a service's export: the caller's own bearer credential
    (an API token or a console access token holding ``gdpr:admin``), forwarded, never widened. Each
    service checks ``gdpr:admin`` itself through its Authenticator (``deps.auth.require``); the console
    holds no key of its own that would open a customer's data on a caller's behalf."""
    return credential or ""


async def _export_from(deps: ConsoleDeps, service: Service, customer_id: str, credential: str | None) -> Any:
    """One service's export document (``ApiError`` when it does not answer 200)."""
    url = deps.api.base(service) + fill_url_template(EXPORT_PATH, {"customer_id": customer_id})
    headers = {"Authorization": _authorization(credential), "Accept": "application/json"}
    try:
        answer = await deps.api.http.get(url, headers=headers)
    except httpx.HTTPError:
        raise ApiError(service=service, status=503) from None
    if answer.status_code != 200:
        raise ApiError(service=service, status=answer.status_code)
    return answer.json()


async def _opted_out(deps: ConsoleDeps, customer_id: str, credential: str | None) -> bool:
    """Whether the rules' context says the customer opted out (read from the actions service's export,
    which ``gdpr:admin`` opens): the erasure event carries it, so the notifier keeps that opt-out under
    a keyed hash once the context is gone."""
    held = await _export_from(deps, "actions", customer_id, credential)
    customer = held.get("customer") if isinstance(held, dict) else None
    return bool(customer and customer.get("opted_out"))
