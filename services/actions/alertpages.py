"""Pages of the alert inbox (pure): the orders, their sort keys and the opaque keyset cursors.

An inbox of thousands of alerts is read a page at a time. Offsets would shift under a page while new
alerts arrive (one shown twice, or one skipped); a cursor names the last (or first) alert of a page by
its sort key, so the next page starts right after it whatever arrived before it.

Two orders:

- ``newest``: newest first (the API's historical order, ``created_at DESC, alert_id``);
- ``work``: the order a CSM works in (the console's inbox): open, then acknowledged, then resolved;
  escalated first; priority (urgent, high, normal, low, other); the SLA that runs out first (an
  acknowledged alert's SLA no longer runs: last); the newest; the id.

A key is a tuple of integers (microseconds since the epoch for times, negated for "newest first") and
the alert id, the same in Python (the in-memory store, the tests) and in SQL
(``repository.alerts``); the cursor is that tuple as base64url JSON, tagged with its order. A cursor
only positions a page: the caller's reach still decides which alerts are in it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

ORDERS: tuple[str, ...] = ("newest", "work")
STATUS_RANK = {"open": 0, "acknowledged": 1, "resolved": 2}
PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}
OTHER_PRIORITY = len(PRIORITY_RANK)
#: The due time of an alert whose SLA does not run (none, or acknowledged): after every real one.
NO_DUE = 2**63 - 1
#: How many integers precede the alert id in each order's key.
KEY_INTS = {"newest": 1, "work": 5}
MAX_CURSOR_CHARS = 400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

Key = tuple[int | str, ...]


class CursorError(ValueError):
    """A cursor this API did not make (or for another order)."""


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page: the filters, the order, its size, and where it starts (``after``) or ends (``before``)."""

    order: str = "work"
    statuses: tuple[str, ...] = ()
    owner: str | None = None
    customer_id: str | None = None
    priority: str | None = None
    escalated: bool | None = None
    limit: int = 50
    after: Key | None = None
    before: Key | None = None


@dataclass(frozen=True, slots=True)
class PageCounts:
    """Of every alert the filter (and the caller's reach) selects, not only the page's."""

    total: int
    open: int
    overdue: int
    escalated: int


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[dict[str, Any]]
    keys: list[Key]
    counts: PageCounts
    offset: int  # how many alerts of the filter come before the page's first
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def next_key(self) -> Key | None:
        return self.keys[-1] if self.keys and self.offset + len(self.keys) < self.counts.total else None

    @property
    def prev_key(self) -> Key | None:
        return self.keys[0] if self.keys and self.offset > 0 else None


def micros(at: datetime) -> int:
    """Whole microseconds since the epoch, exactly (PostgreSQL keeps microseconds)."""
    return (at - _EPOCH) // _MICRO


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        return datetime.fromisoformat(value)
    return None


def key_of(order: str, alert: Mapping[str, Any]) -> Key:
    """An alert's sort key in ``order`` (the alert as the API answers it, or with datetimes)."""
    created = _when(alert.get("created_at"))
    newest = -micros(created) if created is not None else 0
    alert_id = str(alert.get("alert_id") or "")
    if order == "newest":
        return (newest, alert_id)
    due = _when(alert.get("due_at"))
    running = due is not None and alert.get("acknowledged_at") in (None, "")
    return (
        STATUS_RANK.get(str(alert.get("status")), len(STATUS_RANK)),
        0 if alert.get("escalated_at") not in (None, "") else 1,
        PRIORITY_RANK.get(str(alert.get("priority")), OTHER_PRIORITY),
        micros(due) if running and due is not None else NO_DUE,
        newest,
        alert_id,
    )


def encode(order: str, key: Sequence[int | str]) -> str:
    raw = json.dumps([order, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(order: str, cursor: str) -> Key:
    """The key a cursor of ``order`` names; ``CursorError`` for anything else."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        raise CursorError("cursor: too long or empty")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        found = json.loads(raw)
    except (binascii.Error, ValueError):
        raise CursorError("cursor: not a cursor of this API") from None
    ints = KEY_INTS.get(order)
    if (
        ints is None
        or not isinstance(found, list)
        or len(found) != ints + 2
        or found[0] != order
        or not all(type(v) is int for v in found[1 : ints + 1])
        or not isinstance(found[-1], str)
    ):
        raise CursorError(f"cursor: not a cursor of the {order} order")
    return tuple(found[1:])


def overdue(alert: Mapping[str, Any], now: datetime) -> bool:
    """Its SLA runs (unresolved, not acknowledged) and has run out, as the inbox's countdown says."""
    due = _when(alert.get("due_at"))
    return (
        due is not None
        and alert.get("status") != "resolved"
        and alert.get("acknowledged_at") in (None, "")
        and due <= now
    )


def page_of(query: PageQuery, alerts: Sequence[Mapping[str, Any]], *, now: datetime) -> AlertPage:
    """A page of already filtered alerts (the in-memory store's way; PostgreSQL does it in SQL)."""
    keyed = sorted(((key_of(query.order, a), a) for a in alerts), key=lambda item: item[0])
    counts = PageCounts(
        total=len(keyed),
        open=sum(1 for _, a in keyed if a.get("status") == "open"),
        overdue=sum(1 for _, a in keyed if overdue(a, now)),
        escalated=sum(
            1 for _, a in keyed if a.get("status") != "resolved" and a.get("escalated_at") not in (None, "")
        ),
    )
    if query.before is not None:
        earlier = [item for item in keyed if item[0] < query.before]
        chosen = earlier[-query.limit :]
    else:
        later = [item for item in keyed if query.after is None or item[0] > query.after]
        chosen = later[: query.limit]
    offset = sum(1 for k, _ in keyed if chosen and k < chosen[0][0]) if chosen else 0
    return AlertPage(
        alerts=[dict(a) for _, a in chosen],
        keys=[k for k, _ in chosen],
        counts=counts,
        offset=offset,
    )
