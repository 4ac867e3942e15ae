"""GDPR rights per customer (scope ``gdpr:admin``): erasure (art. 17) and export (art. 15/20).

Erase publishes one ``csat.customers.erased.v1`` event (202 once the broker's in-sync replicas have it);
each service's erasure consumer scrubs its own tables in one transaction with its offsets and records
its status under the erasure id, which ``GET /v1/gdpr/erasures/{id}`` reads back. Export asks each
service for what it holds and answers one JSON document. Both are audited; the erasure's audit entry
names the erasure id, not the customer (the audit log outlives the erasure).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from services.console import gdpr
from services.console.apiclient import ApiError
from services.console.deps import ConsoleDeps
from services.console.ports import EventsUnavailable
from shared.http import problem
from shared.identity.ports import AuditAction, AuditOutcome
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.security.text import SafeLine

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
    ) -> None:
        await gdpr.audit(deps, request, principal, action, target=target, outcome=outcome)

    @r.post(
        "/customers/{customer_id}/erase",
        status_code=202,
        summary="Erase a customer everywhere (GDPR art. 17): 202 once the erasure event is durable",
    )
    async def erase(request: Request, customer_id: CustomerId, principal: Principal = gdpr_admin) -> Any:
        erasure_id = gdpr.new_erasure_id()
        try:
            await gdpr.publish_erasure(
                deps,
                customer_id,
                request.headers.get("authorization"),
                erasure_id=erasure_id,
                requested_by=principal.log_name,
            )
        except ApiError:
            detail = "actions did not answer; nothing was erased, try again"
            return problem(503, "Service Unavailable", detail=detail)
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
                "services": list(gdpr.ERASING),
            },
        )

    @r.get("/erasures/{erasure_id}", summary="Where an erasure stands, service by service")
    async def erasure_status(erasure_id: ErasureId, principal: Principal = gdpr_admin) -> Any:
        return await gdpr.erasure_status(deps, erasure_id)

    @r.get(
        "/customers/{customer_id}/export",
        summary="Everything held about a customer (GDPR art. 15/20), one JSON document",
    )
    async def export(request: Request, customer_id: CustomerId, principal: Principal = gdpr_admin) -> Any:
        try:
            document = await gdpr.export_document(deps, customer_id, request.headers.get("authorization"))
        except ApiError as exc:
            await audit(
                request, principal, AuditAction.GDPR_EXPORT, target=customer_id, outcome=AuditOutcome.FAILED
            )
            return problem(
                503,
                "Service Unavailable",
                detail=f"{exc.service} did not answer its export ({exc.status}); nothing partial is returned",
            )
        await audit(request, principal, AuditAction.GDPR_EXPORT, target=customer_id)
        return JSONResponse(
            document,
            headers={
                "Cache-Control": "no-store",
                "Content-Disposition": 'attachment; filename="customer-export.json"',
            },
        )

    return r
