"""GDPR rights per customer, shared by the API (``routes/gdpr.py``, a bearer credential) and the
Customer page's admin buttons (``routes/customers.py``, a signed-in admin's own access token).

Export asks each service that holds customer data for its part and returns one document, or fails
whole (``ApiError`` naming the service). Erasure reads the opt-out from the actions service's export,
then publishes one ``csat.customers.erased.v1`` event; each service's erasure consumer records its
status under the erasure id, which ``erasure_status`` reads back. The caller's credential is forwarded
to each service, never widened: each checks ``gdpr:admin`` itself.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
from fastapi import Request

from services.console.apiclient import ApiError, Service
from services.console.deps import ConsoleDeps
from services.console.people import SERVICE
from services.console.web import client_ip
from shared import events as ev
from shared.envelope import encode
from shared.identity.accounts import audit_entry
from shared.identity.ports import AuditAction, AuditOutcome
from shared.identity.principal import Principal
from shared.security.urls import fill_url_template

#: The services that hold customer data and erase it on the event (each writes ops.erasures).
ERASING: tuple[Service, ...] = ("collector", "scorer", "actions", "notifier")
EXPORT_PATH = "/v1/gdpr/customers/{customer_id}/export"
EXPORT_FORMAT = "csat-customer-export/1"


async def audit(
    deps: ConsoleDeps,
    request: Request,
    principal: Principal,
    action: AuditAction,
    *,
    target: str,
    outcome: AuditOutcome = AuditOutcome.OK,
) -> None:
    """An audit entry for an export (naming the customer) or an erasure (naming the erasure id only: the
    audit log outlives the erasure)."""
    await deps.identity.append_audit(
        entry=audit_entry(
            principal,
            action,
            service=SERVICE,
            at=deps.clock(),
            target=target,
            outcome=outcome,
            source_ip=client_ip(request, deps.settings.proxy_networks),
        )
    )


def _authorization(credential: str | None) -> str:
    """The credential the console presents to a service's export: the caller's own bearer credential
    (an API token or a console access token holding ``gdpr:admin``), forwarded, never widened. Each
    service checks ``gdpr:admin`` itself through its Authenticator (``deps.auth.require``); the console
    holds no key of its own that would open a customer's data on a caller's behalf."""
    return credential or ""


async def export_from(deps: ConsoleDeps, service: Service, customer_id: str, credential: str | None) -> Any:
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


async def opted_out(deps: ConsoleDeps, customer_id: str, credential: str | None) -> bool:
    """Whether the rules' context says the customer opted out (read from the actions service's export,
    which ``gdpr:admin`` opens): the erasure event carries it, so the notifier keeps that opt-out under
    a keyed hash once the context is gone."""
    held = await export_from(deps, "actions", customer_id, credential)
    customer = held.get("customer") if isinstance(held, dict) else None
    return bool(customer and customer.get("opted_out"))


async def export_document(deps: ConsoleDeps, customer_id: str, credential: str | None) -> dict[str, Any]:
    """Everything held about the customer, or ``ApiError`` from the first service that did not answer
    (nothing partial)."""
    held = {name: await export_from(deps, name, customer_id, credential) for name in ERASING}
    return {
        "format": EXPORT_FORMAT,
        "customer_id": customer_id,
        "exported_at": deps.clock().isoformat(),
        "services": held,
    }


def new_erasure_id() -> str:
    return "er_" + secrets.token_hex(16)


async def publish_erasure(
    deps: ConsoleDeps, customer_id: str, credential: str | None, *, erasure_id: str, requested_by: str
) -> None:
    """Publish the erasure event, returning once the broker's in-sync replicas have it. ``ApiError``
    when the actions service cannot say whether the customer opted out (nothing is published),
    ``EventsUnavailable`` when the broker did not take it."""
    was_opted_out = await opted_out(deps, customer_id, credential)
    event = ev.CustomerErased(
        erasure_id=erasure_id,
        customer_id=customer_id,
        pseudonym="erased_" + secrets.token_hex(16),
        requested_at=deps.clock(),
        requested_by=requested_by,
        opted_out=was_opted_out,
    )
    record = encode(
        topic=deps.settings.topics.customers_erased,
        event_type=ev.CUSTOMER_ERASED,
        source="/console",
        event_id=erasure_id,
        data=event,
        key=customer_id,
    )
    await deps.events.publish(record)


async def erasure_status(deps: ConsoleDeps, erasure_id: str) -> dict[str, Any]:
    """Each erasing service ``done`` (when, rows changed) or ``pending``; ``complete`` when all are done."""
    done = {d.service: d for d in await deps.console.erasure_status(erasure_id=erasure_id)}
    services = {
        name: (
            {"status": "done", "erased_at": done[name].erased_at.isoformat(), "removed": done[name].removed}
            if name in done
            else {"status": "pending"}
        )
        for name in ERASING
    }
    return {"erasure_id": erasure_id, "complete": set(done) >= set(ERASING), "services": services}
