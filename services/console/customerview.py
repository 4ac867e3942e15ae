"""The Customer view (pure): one customer's page from four answers (the actions service's context and
alerts, the scorer's history, the notifier's deliveries), and who may read it.

A CSM reads the customers they own (``Principal.owns``: the context's owner address, or an account id
one of the customer's alerts carries); managers and admins read every customer. The rating trend's
chart is drawn on the server as an inline SVG of the normalised scores (0-100, any scale), with the
ratings' table as its text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.console.alertview import AlertRow, row_of
from shared.identity.principal import Principal

CUSTOMER_ID_MAX = 200
HISTORY_LIMIT = 50
#: Delivery statuses a person reads as "went out", "on its way", "did not go out".
DELIVERY_STATES = {
    "sent": "sent",
    "pending": "waiting",
    "sending": "waiting",
    "failed": "failed",
    "suppressed": "suppressed",
    "unknown": "unknown",
}


def when(text: Any) -> datetime | None:
    try:
        found = datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
    return found if found is not None and found.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Normalised scores over time as an SVG polyline with a dot per rating (oldest left)."""

    width: int
    height: int
    points: tuple[Point, ...]

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def chart(ratings: Sequence[Mapping[str, Any]], *, width: int = 320, height: int = 80, pad: int = 6) -> Chart:
    """The ratings (newest first, as the scorer gives them) placed by time, 0-100 bottom to top."""
    dated = [
        (at, r) for r in ratings if (at := when(r.get("occurred_at"))) and r.get("normalized") is not None
    ]
    dated.sort(key=lambda x: x[0])
    if not dated:
        return Chart(width, height, ())
    first, last = dated[0][0].timestamp(), dated[-1][0].timestamp()
    span = (last - first) or 1.0
    inner_w, inner_h = width - 2 * pad, height - 2 * pad
    points = []
    for at, r in dated:
        x = pad + (inner_w * (at.timestamp() - first) / span if len(dated) > 1 else inner_w / 2)
        y = pad + inner_h * (1 - float(r["normalized"]) / 100)
        points.append(Point(round(x, 1), round(y, 1), f"{r.get('score')}/{r.get('scale')}"))
    return Chart(width, height, tuple(points))


@dataclass(frozen=True, slots=True)
class CustomerPage:
    customer_id: str
    context: Mapping[str, Any] | None
    history: Mapping[str, Any] | None
    alerts: tuple[AlertRow, ...]
    deliveries: tuple[Mapping[str, Any], ...]
    delivery_counts: Mapping[str, int]

    @property
    def ratings(self) -> list[Mapping[str, Any]]:
        return list((self.history or {}).get("ratings") or [])

    @property
    def comments(self) -> list[Mapping[str, Any]]:
        return [r for r in self.ratings if r.get("comment")]

    @property
    def trend(self) -> Mapping[str, Any]:
        found = (self.history or {}).get("trend")
        return found if isinstance(found, Mapping) else {}

    @property
    def account_ids(self) -> frozenset[str]:
        return frozenset(a.account_id for a in self.alerts if a.account_id)

    @property
    def empty(self) -> bool:
        return not (self.context or self.ratings or self.alerts or self.deliveries)

    @property
    def consent(self) -> Mapping[str, bool]:
        found = (self.context or {}).get("consent")
        return {str(k): bool(v) for k, v in found.items()} if isinstance(found, Mapping) else {}


def assemble(
    customer_id: str,
    *,
    context: Mapping[str, Any] | None,
    history: Mapping[str, Any] | None,
    alerts: Sequence[Mapping[str, Any]],
    deliveries: Mapping[str, Any] | None,
) -> CustomerPage:
    rows = tuple(
        sorted(
            (row_of(a) for a in alerts),
            key=lambda a: a.created_at.timestamp() if a.created_at else 0.0,
            reverse=True,
        )
    )
    found = (deliveries or {}).get("deliveries") or []
    counts = (deliveries or {}).get("counts") or {}
    return CustomerPage(
        customer_id=customer_id,
        context=context,
        history=history,
        alerts=rows,
        deliveries=tuple(d for d in found if isinstance(d, Mapping)),
        delivery_counts={str(k): int(v) for k, v in counts.items()},
    )


def readable_by(principal: Principal, page: CustomerPage) -> bool:
    """Managers and admins: any customer with something stored. A CSM: an owned customer."""
    if page.empty:
        return False
    if principal.sees_all_accounts:
        return True
    owner = (page.context or {}).get("owner_email")
    if principal.owns(owner_email=str(owner) if owner else None):
        return True
    return any(principal.owns(account_id=a) for a in page.account_ids)


def delivery_state(status: Any) -> str:
    return DELIVERY_STATES.get(str(status or ""), "unknown")


# --- health ---------------------------------------------------------------------------------------------

BANDS = ("healthy", "at_risk", "critical")


def health_subject(customer_id: str, page: CustomerPage) -> tuple[str, str]:
    """Whose health the page shows: the customer's account (its context's ``account_id``, else the one
    its alerts name), else the customer alone (the actions service scores a customer in no account)."""
    attributes = (page.context or {}).get("attributes")
    account = attributes.get("account_id") if isinstance(attributes, Mapping) else None
    if isinstance(account, str) and account:
        return "account", account
    named = sorted(page.account_ids)
    if named:
        return "account", named[0]
    return "customer", customer_id


@dataclass(frozen=True, slots=True)
class HealthLine:
    """One component of the explanation: what it read and the points it gave out of those it could."""

    id: str
    status: str
    value: float | None
    points: float | None
    max_points: float | None
    reason: str | None

    @property
    def name(self) -> str:
        return self.id.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Health:
    kind: str  # account or customer
    subject: str
    score: float | None
    band: str | None
    since: datetime | None
    delta_30d: float | None
    lines: tuple[HealthLine, ...]


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def health_of(kind: str, subject: str, body: Mapping[str, Any] | None) -> Health | None:
    """The actions service's ``GET /v1/accounts/{id}/health`` answer as the page shows it (None: none yet)."""
    if not body:
        return None
    band = body.get("band")
    explanation = body.get("explanation")
    lines = tuple(
        HealthLine(
            id=str(c.get("id") or ""),
            status=str(c.get("status") or ""),
            value=_float(c.get("value")),
            points=_float(c.get("points")),
            max_points=_float(c.get("max_points")),
            reason=str(c["reason"]) if c.get("reason") else None,
        )
        for c in (explanation if isinstance(explanation, list) else [])
        if isinstance(c, Mapping)
    )
    return Health(
        kind=kind,
        subject=subject,
        score=_float(body.get("score")),
        band=str(band) if band in BANDS else None,
        since=when(body.get("band_since")),
        delta_30d=_float(body.get("delta_30d")),
        lines=lines,
    )


# --- erasure: the typed confirmation ---------------------------------------------------------------


def confirmed(customer_id: str, typed: str | None) -> bool:
    """The erase form goes ahead only when the admin typed the customer's id exactly (spaces around
    it aside): a slip of the mouse cannot erase anyone."""
    return (typed or "").strip() == customer_id
