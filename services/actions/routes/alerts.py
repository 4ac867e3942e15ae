"""The CSM alerts API: the inbox, one alert, acknowledge (stops escalation), assign, resolve.

``alerts:read`` / ``alerts:write``; a CSM (a role that does not see every account) sees and changes
only the alerts they own, by their address or their accounts; any other alert answers 404. A
transition or an assignment is attributed to the caller (``acknowledged_by``/``resolved_by``/
``context.assigned.by`` = its ``log_name``), never to a name in the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.actions import alertpages
from services.actions.deps import ActionsDeps
from services.actions.ports import AlertTransition, Reach
from services.actions.routes.auditing import record
from shared.http import problem
from shared.identity.ports import AuditAction
from shared.identity.principal import Principal
from shared.identity.scopes import Scope

NOT_FOUND = "no such alert"


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(
        default=None,
        max_length=200,
        description="Ignored: a transition is attributed to the credential's principal",
        deprecated=True,
    )
    note: str | None = Field(default=None, max_length=2000)


class AlertAssign(BaseModel):
    model_config = ConfigDict(extra="forbid")

    owner_email: EmailStr = Field(description="The new owner's address (who the alert is for)")
    owner_name: str | None = Field(default=None, max_length=200)
    by: str | None = Field(
        default=None, max_length=200, description="Ignored: the assignment is recorded as the caller's"
    )


def reach_of(principal: Principal) -> Reach | None:
    """None for roles that see every account; otherwise what a CSM owns."""
    if principal.sees_all_accounts:
        return None
    return Reach(owner_email=principal.owner_email, accounts=principal.accounts)


def owns_alert(principal: Principal, alert: Mapping[str, Any]) -> bool:
    context = alert.get("context")
    customer = context.get("customer") if isinstance(context, Mapping) else None
    account = customer.get("account_id") if isinstance(customer, Mapping) else None
    owner = alert.get("owner_email")
    return principal.owns(
        account_id=account if isinstance(account, str) else None,
        owner_email=owner if isinstance(owner, str) else None,
    )


def bad_cursor(name: str, message: str) -> JSONResponse:
    return problem(422, "Unprocessable Content", detail=message, errors=[{"field": name, "message": message}])


def router(deps: ActionsDeps) -> APIRouter:
    """The alert routes, registered in this order (``/v1/alerts`` before ``/v1/alerts/{alert_id}``)."""
    api = APIRouter(tags=["alerts"])
    reader = Depends(deps.auth.require(Scope.ALERTS_READ))
    writer = Depends(deps.auth.require(Scope.ALERTS_WRITE))
    _inbox_route(api, deps, reader=reader)
    _alert_route(api, deps, reader=reader)
    _transition_routes(api, deps, writer=writer)
    _assign_route(api, deps, writer=writer)
    return api


def _inbox_route(api: APIRouter, deps: ActionsDeps, *, reader: Any) -> None:
    """``GET /v1/alerts``: the newest alerts (the historical answer), or a page in either order."""
    tx = deps.transactions

    @api.get("/v1/alerts", summary="CSM alerts, newest first or in working order, a page at a time")
    async def get_alerts(
        status: Annotated[
            list[Literal["open", "acknowledged", "resolved"]] | None,
            Query(description="repeatable: status=open&status=acknowledged"),
        ] = None,
        owner: str | None = None,
        customer_id: str | None = None,
        priority: Literal["urgent", "high", "normal", "low"] | None = None,
        escalated: bool | None = None,
        order: Annotated[
            Literal["newest", "work"] | None,
            Query(description="newest (the default) or work: the order a CSM works in; answers a page"),
        ] = None,
        after: Annotated[str | None, Query(max_length=alertpages.MAX_CURSOR_CHARS)] = None,
        before: Annotated[str | None, Query(max_length=alertpages.MAX_CURSOR_CHARS)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        principal: Principal = reader,
    ) -> Any:
        statuses = tuple(dict.fromkeys(status or ()))
        paged = (order, after, before, priority, escalated) != (None, None, None, None, None)
        if not paged and len(statuses) <= 1:  # the historical answer: the newest alerts, no page fields
            async with tx.connect() as stores:
                items = await stores.alerts.search(
                    status=statuses[0] if statuses else None,
                    owner=owner,
                    customer_id=customer_id,
                    limit=limit,
                    reach=reach_of(principal),
                )
            return {"alerts": items}
        query = _page_query(
            order=order or "newest",
            statuses=statuses,
            owner=owner,
            customer_id=customer_id,
            priority=priority,
            escalated=escalated,
            limit=limit,
            after=after,
            before=before,
        )
        if not isinstance(query, alertpages.PageQuery):
            return query
        async with tx.connect() as stores:
            page = await stores.alerts.page(query=query, reach=reach_of(principal), now=deps.clock())
        return _page_body(query, page)


def _page_query(
    *,
    order: str,
    statuses: tuple[str, ...],
    owner: str | None,
    customer_id: str | None,
    priority: str | None,
    escalated: bool | None,
    limit: int,
    after: str | None,
    before: str | None,
) -> alertpages.PageQuery | JSONResponse:
    """The page asked for, its cursors decoded; or the problem naming the cursor at fault."""
    if after is not None and before is not None:
        return bad_cursor("before", "give after or before, not both")
    try:
        after_key = alertpages.decode(order, after) if after is not None else None
    except alertpages.CursorError as exc:
        return bad_cursor("after", str(exc))
    try:
        before_key = alertpages.decode(order, before) if before is not None else None
    except alertpages.CursorError as exc:
        return bad_cursor("before", str(exc))
    return alertpages.PageQuery(
        order=order,
        statuses=statuses,
        owner=owner,
        customer_id=customer_id,
        priority=priority,
        escalated=escalated,
        limit=limit,
        after=after_key,
        before=before_key,
    )


def _page_body(query: alertpages.PageQuery, page: alertpages.AlertPage) -> dict[str, Any]:
    """A page's answer: its alerts, the filter's counts, and the cursors to the pages beside it."""
    nxt, prev = page.next_key, page.prev_key
    return {
        "alerts": page.alerts,
        "order": query.order,
        "limit": query.limit,
        "total": page.counts.total,
        "offset": page.offset,
        "counts": {
            "open": page.counts.open,
            "overdue": page.counts.overdue,
            "escalated": page.counts.escalated,
        },
        "next_cursor": alertpages.encode(query.order, nxt) if nxt is not None else None,
        "prev_cursor": alertpages.encode(query.order, prev) if prev is not None else None,
    }


def _alert_route(api: APIRouter, deps: ActionsDeps, *, reader: Any) -> None:
    """``GET /v1/alerts/{alert_id}``: one alert the caller owns (any other answers 404)."""
    tx = deps.transactions

    @api.get("/v1/alerts/{alert_id}", summary="One alert")
    async def get_alert(alert_id: str, principal: Principal = reader) -> Any:
        async with tx.connect() as stores:
            found = await stores.alerts.get(alert_id=alert_id)
        if found is None or not owns_alert(principal, found):
            return problem(404, "Not Found", detail=NOT_FOUND)
        return found


def _transition_routes(api: APIRouter, deps: ActionsDeps, *, writer: Any) -> None:
    """``ack`` (stops the SLA escalation) and ``resolve``: one transition each, attributed to the caller."""

    @api.post("/v1/alerts/{alert_id}/ack", summary="Acknowledge (stops the SLA escalation)")
    async def ack_alert(
        request: Request, alert_id: str, body: AlertAction | None = None, principal: Principal = writer
    ) -> Any:
        return await _transition(deps, request, alert_id, body, "acknowledged", principal)

    @api.post("/v1/alerts/{alert_id}/resolve", summary="Resolve")
    async def resolve_alert(
        request: Request, alert_id: str, body: AlertAction | None = None, principal: Principal = writer
    ) -> Any:
        return await _transition(deps, request, alert_id, body, "resolved", principal)


def _assign_route(api: APIRouter, deps: ActionsDeps, *, writer: Any) -> None:
    """``assign``: another owner, recorded as the caller's; the SLA and escalation are unchanged."""
    tx = deps.transactions

    @api.post(
        "/v1/alerts/{alert_id}/assign", summary="Assign to another owner (SLA and escalation unchanged)"
    )
    async def assign_alert(
        request: Request, alert_id: str, body: AlertAssign, principal: Principal = writer
    ) -> Any:
        async with tx.begin() as stores:
            found = await stores.alerts.get(alert_id=alert_id)
            if found is None or not owns_alert(principal, found):
                return problem(404, "Not Found", detail=NOT_FOUND)
            done = await stores.alerts.assign(
                alert_id=alert_id,
                owner_email=str(body.owner_email),
                owner_name=body.owner_name,
                by=principal.log_name,
                now=deps.clock(),
            )
        # No address in the audit entry: the new owner is in the alert itself.
        return await _answer(
            deps, request, principal, alert_id, done, AuditAction.ALERT_ASSIGN, {"assigned": "owner"}
        )


async def _transition(
    deps: ActionsDeps,
    request: Request,
    alert_id: str,
    body: AlertAction | None,
    to: str,
    principal: Principal,
) -> Any:
    """Move an alert the caller owns to ``to``; its customer's health follows before the commit."""
    action = body or AlertAction()
    async with deps.transactions.begin() as stores:
        found = await stores.alerts.get(alert_id=alert_id)
        if found is None or not owns_alert(principal, found):
            return problem(404, "Not Found", detail=NOT_FOUND)
        done = await stores.alerts.transition(
            alert_id=alert_id, to=to, by=principal.log_name, note=action.note, now=deps.clock()
        )
        customer = (done.alert or {}).get("customer_id") if done.error is None else None
        if customer and deps.health is not None:
            # open_alerts changed: recompute the customer's accounts, publish before committing
            records = await deps.health.on_alert_change(stores, customer_id=customer, now=deps.clock())
            if records and deps.publish is not None:
                await deps.publish(records)
    audited = AuditAction.ALERT_ACK if to == "acknowledged" else AuditAction.ALERT_RESOLVE
    return await _answer(deps, request, principal, alert_id, done, audited, {"status": to})


async def _answer(
    deps: ActionsDeps,
    request: Request,
    principal: Principal,
    alert_id: str,
    done: AlertTransition,
    audited: AuditAction,
    details: Mapping[str, str],
) -> Any:
    """The changed alert (audited), 404 if it went away, or 409 naming the state that refused it."""
    if done.error == "not_found":
        return problem(404, "Not Found", detail=NOT_FOUND)
    if done.error is not None:
        return problem(409, "Conflict", detail=f"the alert is {done.error}", alert=done.alert)
    await record(deps, request, principal, audited, target=f"alert:{alert_id}", details=details)
    return done.alert
