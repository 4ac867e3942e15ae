"""The Alerts inbox (pure): alerts from the actions API as rows, who may see them, their order, the SLA
countdown, and the filters of the address.

A CSM sees the alerts of the accounts they own (the alert's owner address is theirs, or its customer's
account id is one of theirs: ``Principal.owns``); managers and admins see every alert. The order is
the one a CSM works in: unresolved first, then the escalated, then by priority, then the SLA that
runs out first (alerts without an SLA after those with one), then the newest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.identity.principal import Principal

STATUSES: tuple[str, ...] = ("open", "acknowledged", "resolved")
#: The inbox's status filter: ``active`` (open or acknowledged) by default, one status, or ``all``.
STATUS_FILTERS: tuple[str, ...] = ("active", "open", "acknowledged", "resolved", "all")
PRIORITIES: tuple[str, ...] = ("urgent", "high", "normal", "low")
_PRIORITY_RANK = {p: i for i, p in enumerate(PRIORITIES)}
#: An SLA with less than this left is "due soon" (shown as such, in words and colour).
DUE_SOON = timedelta(hours=2)
#: How many alerts the inbox asks the actions service for (the newest first).
FETCH_LIMIT = 500
#: Alerts per page of the inbox (the actions service pages them in working order).
PAGE_SIZE = 50
#: A page cursor is the actions service's, opaque here: base64url, bounded.
_CURSOR = re.compile(r"^[A-Za-z0-9_-]{1,400}$")


class FilterError(ValueError):
    """A filter of the address the inbox does not know; ``field`` names it."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True, slots=True)
class InboxQuery:
    status: str = "active"
    priority: str | None = None
    escalated: bool = False
    after: str | None = None  # the page starts after this alert (the actions service's cursor)
    before: str | None = None  # the page ends before this one (the previous page)

    def params(self) -> list[tuple[str, str]]:
        """The address's query for this filter and page (only what differs from the default)."""
        out = self.filter_params()
        if self.after:
            out.append(("after", self.after))
        elif self.before:
            out.append(("before", self.before))
        return out

    def filter_params(self) -> list[tuple[str, str]]:
        """The filters alone: the first page of the same filter."""
        out: list[tuple[str, str]] = []
        if self.status != "active":
            out.append(("status", self.status))
        if self.priority:
            out.append(("priority", self.priority))
        if self.escalated:
            out.append(("escalated", "1"))
        return out

    def api_params(self) -> dict[str, Any]:
        """``GET /v1/alerts`` for this page: working order, the statuses, filters, the cursor."""
        statuses: list[str] = []
        if self.status == "active":
            statuses = ["open", "acknowledged"]
        elif self.api_status is not None:
            statuses = [self.api_status]
        out: dict[str, Any] = {"order": "work", "limit": PAGE_SIZE}
        if statuses:
            out["status"] = statuses
        if self.priority:
            out["priority"] = self.priority
        if self.escalated:
            out["escalated"] = "true"
        if self.after:
            out["after"] = self.after
        elif self.before:
            out["before"] = self.before
        return out

    @property
    def api_status(self) -> str | None:
        """The one status the actions API is asked for (None: every status, filtered here)."""
        return self.status if self.status in STATUSES else None


def parse_query(
    *,
    status: str | None,
    priority: str | None,
    escalated: str | None,
    after: str | None = None,
    before: str | None = None,
) -> InboxQuery:
    for cursor in (after, before):
        if cursor and not _CURSOR.match(cursor):
            raise FilterError("page")
    status = (status or "active").strip().lower()
    if status not in STATUS_FILTERS:
        raise FilterError("status")
    prio = (priority or "").strip().lower() or None
    if prio is not None and prio not in PRIORITIES:
        raise FilterError("priority")
    flag = (escalated or "").strip().lower()
    if flag not in ("", "0", "1", "true", "false", "yes", "no"):
        raise FilterError("escalated")
    return InboxQuery(
        status=status,
        priority=prio,
        escalated=flag in ("1", "true", "yes"),
        after=after or None,
        before=None if after else before or None,
    )


@dataclass(frozen=True, slots=True)
class Sla:
    """Where an alert's SLA stands at ``now``: ``state`` is none, met, ok, soon or overdue."""

    state: str
    due_at: datetime | None
    left: timedelta | None  # negative when overdue


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    rule_id: str
    customer_id: str | None
    account_id: str | None
    tier: str | None
    account_value: float | None
    owner_email: str
    owner_name: str | None
    priority: str
    status: str
    created_at: datetime | None
    due_at: datetime | None
    escalated_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    note: str | None
    metric: str | None
    scale: str | None
    score: int | None
    comment: str | None
    touchpoint: str | None
    segment: Mapping[str, str]
    themes: tuple[str, ...]
    rated_at: datetime | None
    email: str | None
    phone: str | None
    assigned: Mapping[str, Any] | None

    @property
    def escalated(self) -> bool:
        return self.escalated_at is not None

    @property
    def active(self) -> bool:
        return self.status != "resolved"

    def sla(self, now: datetime) -> Sla:
        if self.due_at is None:
            return Sla("none", None, None)
        if not self.active or self.acknowledged_at is not None:
            return Sla("met", self.due_at, None)  # acknowledged in time or not: the SLA no longer runs
        left = self.due_at - now
        if left <= timedelta(0):
            return Sla("overdue", self.due_at, left)
        return Sla("soon" if left <= DUE_SOON else "ok", self.due_at, left)

    def excerpt(self, chars: int = 140) -> str | None:
        """The comment's start for the inbox row; the whole comment is on the alert's page."""
        if not self.comment:
            return None
        text = " ".join(self.comment.split())
        return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def _when(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        found = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return found if found.tzinfo is not None else None


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def row_of(body: Mapping[str, Any]) -> AlertRow:
    """One alert of the actions API (``GET /v1/alerts``) with its rating context."""
    context = _mapping(body.get("context"))
    rating = _mapping(context.get("rating"))
    customer = _mapping(context.get("customer"))
    segment = _mapping(rating.get("segment"))
    found_themes = rating.get("themes")
    themes: list[Any] = found_themes if isinstance(found_themes, list) else []
    assigned = _mapping(context.get("assigned")) or None
    return AlertRow(
        alert_id=str(body.get("alert_id") or ""),
        rule_id=str(body.get("rule_id") or ""),
        customer_id=_text(body.get("customer_id")),
        account_id=_text(customer.get("account_id")),
        tier=_text(customer.get("tier")),
        account_value=_number(customer.get("account_value")),
        owner_email=str(body.get("owner_email") or ""),
        owner_name=_text(body.get("owner_name")),
        priority=str(body.get("priority") or "normal"),
        status=str(body.get("status") or "open"),
        created_at=_when(body.get("created_at")),
        due_at=_when(body.get("due_at")),
        escalated_at=_when(body.get("escalated_at")),
        acknowledged_at=_when(body.get("acknowledged_at")),
        acknowledged_by=_text(body.get("acknowledged_by")),
        resolved_at=_when(body.get("resolved_at")),
        resolved_by=_text(body.get("resolved_by")),
        note=_text(body.get("note")),
        metric=_text(rating.get("metric")),
        scale=_text(rating.get("scale")),
        score=_int(rating.get("score")),
        comment=_text(rating.get("comment")),
        touchpoint=_text(rating.get("touchpoint")),
        segment={str(k): str(v) for k, v in segment.items()},
        themes=tuple(str(t) for t in themes),
        rated_at=_when(rating.get("occurred_at")),
        email=_text(customer.get("email")),
        phone=_text(customer.get("phone")),
        assigned=assigned,
    )


def visible_to(principal: Principal, row: AlertRow) -> bool:
    """The actions service's rule, applied again here: owned alerts, or every alert for managers."""
    return principal.owns(account_id=row.account_id, owner_email=row.owner_email)


def matches(q: InboxQuery, row: AlertRow) -> bool:
    if q.status == "active" and not row.active:
        return False
    if q.status in STATUSES and row.status != q.status:
        return False
    if q.priority is not None and row.priority != q.priority:
        return False
    return not (q.escalated and not row.escalated)


def _sort_key(row: AlertRow) -> tuple[Any, ...]:
    due = row.due_at.timestamp() if row.due_at is not None and row.acknowledged_at is None else float("inf")
    created = -(row.created_at.timestamp() if row.created_at else 0.0)
    return (
        not row.active,
        row.status != "open",
        not row.escalated,
        _PRIORITY_RANK.get(row.priority, len(PRIORITIES)),
        due,
        created,
        row.alert_id,
    )


def inbox(principal: Principal, q: InboxQuery, bodies: Iterable[Mapping[str, Any]]) -> list[AlertRow]:
    """The rows this person sees under this filter, in working order."""
    rows = [row_of(b) for b in bodies]
    return sorted((r for r in rows if visible_to(principal, r) and matches(q, r)), key=_sort_key)


@dataclass(frozen=True, slots=True)
class Counts:
    open: int
    overdue: int
    escalated: int


def counts(rows: Iterable[AlertRow], now: datetime) -> Counts:
    listed = list(rows)
    return Counts(
        open=sum(1 for r in listed if r.status == "open"),
        overdue=sum(1 for r in listed if r.sla(now).state == "overdue"),
        escalated=sum(1 for r in listed if r.escalated and r.active),
    )


@dataclass(frozen=True, slots=True)
class InboxPage:
    """One page of the inbox: its rows in working order, where it stands, and the filter's counts."""

    rows: list[AlertRow]
    total: int
    offset: int
    counts: Counts
    next_cursor: str | None
    prev_cursor: str | None

    @property
    def first(self) -> int:
        """The 1-based position of the page's first alert (0 when the page is empty)."""
        return self.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.rows)


def page_of(principal: Principal, q: InboxQuery, body: Mapping[str, Any]) -> InboxPage:
    """A page of ``GET /v1/alerts?order=work``: the service's order kept, and its rows checked again
    (ownership, the filter) as every row the console shows is."""
    rows = [row_of(b) for b in body.get("alerts") or [] if isinstance(b, Mapping)]
    kept = [r for r in rows if visible_to(principal, r) and matches(q, r)]
    found = _mapping(body.get("counts"))

    def number(value: Any) -> int:
        return _int(value) or 0

    return InboxPage(
        rows=kept,
        total=number(body.get("total")),
        offset=number(body.get("offset")),
        counts=Counts(
            open=number(found.get("open")),
            overdue=number(found.get("overdue")),
            escalated=number(found.get("escalated")),
        ),
        next_cursor=_cursor(body.get("next_cursor")),
        prev_cursor=_cursor(body.get("prev_cursor")),
    )


def _cursor(value: Any) -> str | None:
    return value if isinstance(value, str) and _CURSOR.match(value) else None


def duration_parts(left: timedelta) -> tuple[int, int, int]:
    """Whole days, hours and minutes of a duration's size (its sign is the caller's business)."""
    minutes = int(abs(left.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    return days, hours, mins
