"""The Alerts view: a CSM's inbox (managers and admins see every alert), one alert in its context, and
acknowledge, assign and resolve with a note.

``/alerts?status=open&priority=high&escalated=1`` is the inbox (filters in the address);
``/alerts/rows`` with the same query is its table body alone, which ``static/alerts.js`` fetches every
``CSAT_ALERTS_POLL_S`` seconds so new alerts appear without a reload; ``/alerts/{id}`` is one alert.
Every page and action checks the scope (``alerts:read``, ``alerts:write``) and that the alert is the
person's (``alertview.visible_to``); an alert that is not answers 404, as if absent.
"""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import RedirectResponse, Response

from services.console import alertview
from services.console.alertview import AlertRow, FilterError, InboxPage, InboxQuery
from services.console.apiclient import ApiError, PersonApi
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.web import PageError, not_found
from shared.identity.ports import User
from shared.identity.scopes import Role, Scope

log = structlog.get_logger(__name__)

ALERT_ID = r"^[A-Za-z0-9_.:-]{1,200}$"
ASSIGNABLE_ROLES = frozenset({Role.CSM, Role.MANAGER, Role.ADMIN})
NOTE_CHARS = 2000
AlertId = Annotated[str, Path(pattern=ALERT_ID)]


def unavailable(exc: ApiError) -> PageError:
    if exc.status == 404:
        return not_found()
    if exc.status == 403:
        return PageError(403, "error.forbidden_title", "error.forbidden")
    return PageError(503, "error.unavailable_title", "error.unavailable")


def bad_filter(field: str) -> PageError:
    return PageError(400, "alerts.bad_filter_title", f"alerts.bad_filter.{field}")


def parse(
    status: str | None,
    priority: str | None,
    escalated: str | None,
    after: str | None = None,
    before: str | None = None,
) -> InboxQuery:
    try:
        return alertview.parse_query(
            status=status, priority=priority, escalated=escalated, after=after, before=before
        )
    except FilterError as exc:
        raise bad_filter(exc.field) from None


async def load_inbox(api: PersonApi, person: SignedIn, q: InboxQuery) -> InboxPage:
    """One page of this filter in working order from the actions service (only the person's own for a
    CSM who owns accounts by address alone; the service applies the person's reach anyway), each row
    checked again here."""
    principal = person.principal
    params = q.api_params()
    if not principal.sees_all_accounts and not principal.accounts and principal.owner_email:
        params["owner"] = principal.owner_email
    try:
        answer = await api.get_json("actions", "/v1/alerts", params=params)
    except ApiError as exc:
        if exc.status == 422:  # a cursor edited by hand, or for another order
            raise bad_filter("page") from None
        raise unavailable(exc) from None
    return alertview.page_of(principal, q, answer or {})


async def load_alert(api: PersonApi, person: SignedIn, alert_id: str) -> AlertRow:
    try:
        body = await api.get_json("actions", "/v1/alerts/{alert_id}", path_params={"alert_id": alert_id})
    except ApiError as exc:
        raise unavailable(exc) from None
    row = alertview.row_of(body)
    if not alertview.visible_to(person.principal, row):
        raise not_found()
    return row


async def assignees(deps: ConsoleDeps) -> list[User]:
    """People an alert may be handed to: enabled CSMs, managers and admins, by name."""
    users = await deps.identity.list_users()
    found = [u for u in users if not u.disabled and u.role in ASSIGNABLE_ROLES]
    return sorted(found, key=lambda u: (u.display_name.casefold(), u.email))


async def names_of(deps: ConsoleDeps, row: AlertRow) -> dict[str, str]:
    """Display names of the people who acted on an alert (recorded as ``person:<id>``)."""
    out: dict[str, str] = {}
    for who in (row.acknowledged_by, row.resolved_by, (row.assigned or {}).get("by")):
        kind, _, subject = str(who or "").partition(":")
        if kind == "person" and subject and who not in out:
            user = await deps.identity.get_user(user_id=subject)
            if user is not None:
                out[str(who)] = user.display_name
    return out


def router(deps: ConsoleDeps) -> APIRouter:
    """The Alerts pages, registered in this order (``/alerts/rows`` before ``/alerts/{alert_id}``)."""
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.ALERTS_READ))
    writer = Depends(deps.gate.person(Scope.ALERTS_WRITE))
    _inbox_routes(r, deps, reader=reader)
    _alert_route(r, deps, reader=reader)
    _action_routes(r, deps, writer=writer, csrf=[Depends(deps.gate.csrf)])
    return r


def _inbox_routes(r: APIRouter, deps: ConsoleDeps, *, reader: Any) -> None:
    """The inbox page, and its table body alone (what ``static/alerts.js`` polls)."""

    @r.get("/alerts")
    async def alerts(
        request: Request,
        status: str | None = None,
        priority: str | None = None,
        escalated: str | None = None,
        after: str | None = None,
        before: str | None = None,
        person: SignedIn = reader,
    ) -> Response:
        q = parse(status, priority, escalated, after, before)
        page = await load_inbox(deps.api.on_behalf_of(person), person, q)
        return deps.pages.render(request, "alerts.html", **_inbox_values(deps, q, page))

    @r.get("/alerts/rows")
    async def alert_rows(
        request: Request,
        status: str | None = None,
        priority: str | None = None,
        escalated: str | None = None,
        after: str | None = None,
        before: str | None = None,
        person: SignedIn = reader,
    ) -> Response:
        q = parse(status, priority, escalated, after, before)
        page = await load_inbox(deps.api.on_behalf_of(person), person, q)
        return deps.pages.render(request, "_alert_rows.html", **_inbox_values(deps, q, page))


def _inbox_values(deps: ConsoleDeps, q: InboxQuery, page: InboxPage) -> dict[str, Any]:
    """What the inbox templates (the page and its polled rows) are rendered with."""
    return {
        "q": q,
        "rows": page.rows,
        "page": page,
        "now": deps.clock(),
        "counts": page.counts,
        "av": alertview,
        "poll_s": deps.settings.alerts_poll_s,
        "query": q.params(),
        "filters": q.filter_params(),
    }


def _alert_route(r: APIRouter, deps: ConsoleDeps, *, reader: Any) -> None:
    """One alert in its context, with the people it may be assigned to when the person may act."""

    @r.get("/alerts/{alert_id}")
    async def alert(
        request: Request, alert_id: AlertId, done: str | None = None, person: SignedIn = reader
    ) -> Response:
        row = await load_alert(deps.api.on_behalf_of(person), person, alert_id)
        people = await assignees(deps) if person.principal.can(Scope.ALERTS_WRITE) and row.active else []
        return deps.pages.render(
            request,
            "alert.html",
            row=row,
            now=deps.clock(),
            av=alertview,
            assignees=people,
            names=await names_of(deps, row),
            done=done if done in ("ack", "assign", "resolve") else None,
            error=None,
            can_write=person.principal.can(Scope.ALERTS_WRITE),
        )


def _action_routes(r: APIRouter, deps: ConsoleDeps, *, writer: Any, csrf: list[Any]) -> None:
    """Acknowledge, resolve (with a note) and assign: forms posted with the CSRF token."""

    @r.post("/alerts/{alert_id}/ack", dependencies=csrf)
    async def acknowledge(alert_id: AlertId, person: SignedIn = writer) -> Response:
        return await _act(deps, person, alert_id, "ack", {"by": person.principal.log_name})

    @r.post("/alerts/{alert_id}/resolve", dependencies=csrf)
    async def resolve(
        alert_id: AlertId,
        note: Annotated[str, Form(max_length=NOTE_CHARS)] = "",
        person: SignedIn = writer,
    ) -> Response:
        body = {"by": person.principal.log_name, "note": note.strip() or None}
        return await _act(deps, person, alert_id, "resolve", body)

    @r.post("/alerts/{alert_id}/assign", dependencies=csrf)
    async def assign(
        alert_id: AlertId,
        owner: Annotated[str, Form(max_length=320)] = "",
        person: SignedIn = writer,
    ) -> Response:
        await load_alert(deps.api.on_behalf_of(person), person, alert_id)  # owned, or 404 first
        chosen = next((u for u in await assignees(deps) if u.user_id == owner), None)
        if chosen is None:
            raise PageError(400, "alerts.bad_filter_title", "alerts.assign.unknown")
        body = {
            "owner_email": chosen.email,
            "owner_name": chosen.display_name,
            "by": person.principal.log_name,
        }
        return await _act(deps, person, alert_id, "assign", body, checked=True)


async def _act(
    deps: ConsoleDeps,
    person: SignedIn,
    alert_id: str,
    verb: str,
    body: dict[str, Any],
    *,
    checked: bool = False,
) -> Response:
    """Ask the actions service to ``verb`` the alert (owned, or 404 first unless ``checked``); back to
    the alert's page, or the page error that says why not."""
    api = deps.api.on_behalf_of(person)
    if not checked:
        await load_alert(api, person, alert_id)  # owned, or 404 before anything changes
    answer = await api.request(
        "POST",
        "actions",
        f"/v1/alerts/{{alert_id}}/{verb}",
        path_params={"alert_id": alert_id},
        json=body,
    )
    if answer.status_code == 409:
        raise PageError(409, "alerts.conflict_title", "alerts.conflict")
    if answer.status_code >= 400:
        raise unavailable(ApiError(service="actions", status=answer.status_code))
    log.info("alert_changed", alert=alert_id, action=verb, principal=person.principal.log_name)
    return RedirectResponse(f"/alerts/{alert_id}?done={verb}", status_code=303)
