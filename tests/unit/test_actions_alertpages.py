"""Pages of the alert inbox (services.actions.alertpages): the working order's key, cursors that only
this API makes, and pages that cover every alert once whichever way they are walked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.actions import alertpages
from services.actions.alertpages import PageQuery

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def alert(alert_id: str, **kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "alert_id": alert_id,
        "status": "open",
        "priority": "normal",
        "due_at": None,
        "escalated_at": None,
        "acknowledged_at": None,
        "created_at": NOW.isoformat(),
    }
    return {**base, **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in kw.items()}}


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        (alert("b"), alert("a", status="acknowledged", acknowledged_at=NOW), "open before acknowledged"),
        (alert("b", status="acknowledged"), alert("a", status="resolved"), "unresolved before resolved"),
        (alert("b", escalated_at=NOW), alert("a", priority="urgent"), "escalated before any priority"),
        (alert("b", priority="urgent"), alert("a", priority="high"), "urgent before high"),
        (alert("b", priority="low"), alert("a", priority="whatever"), "a known priority before others"),
        (alert("b", due_at=NOW), alert("a", due_at=NOW + timedelta(hours=1)), "the SLA out first"),
        (alert("b", due_at=NOW + timedelta(days=9)), alert("a"), "an SLA before none"),
        (
            alert("b", due_at=NOW + timedelta(days=1)),
            alert("a", due_at=NOW, acknowledged_at=NOW),
            "an acknowledged SLA no longer runs",
        ),
        (alert("b", created_at=NOW), alert("a", created_at=NOW - timedelta(microseconds=1)), "newest"),
        (alert("a"), alert("b"), "then the id"),
    ],
)
def test_the_working_order(first: dict[str, Any], second: dict[str, Any], why: str) -> None:
    assert alertpages.key_of("work", first) < alertpages.key_of("work", second), why


def test_newest_first_is_the_historical_order() -> None:
    old, new = alert("a", created_at=NOW - timedelta(seconds=1)), alert("b", created_at=NOW)
    assert alertpages.key_of("newest", new) < alertpages.key_of("newest", old)


def test_a_cursor_reads_back_only_for_its_order() -> None:
    key = alertpages.key_of("work", alert("x-1", due_at=NOW))
    cursor = alertpages.encode("work", key)
    assert alertpages.decode("work", cursor) == key
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    for order, text in [
        ("newest", cursor),  # another order's
        ("work", "bm90LWpzb24"),  # "not-json"
        ("work", "!!"),
        ("work", ""),
        ("work", "A" * 401),
        ("work", alertpages.encode("work", (0, 0, 0, 0, "x"))),  # too short
        ("work", alertpages.encode("work", (0, 0, 0, 0, "1", "x"))),  # a string where a number goes
    ]:
        with pytest.raises(alertpages.CursorError):
            alertpages.decode(order, text)


def _alerts(n: int) -> list[dict[str, Any]]:
    return [
        alert(
            f"a-{i:03d}",
            status=("open", "acknowledged", "resolved")[i % 3],
            priority=("urgent", "high", "normal", "low")[(i // 3) % 4],
            escalated_at=NOW if i % 5 == 0 else None,
            due_at=NOW + timedelta(hours=i % 9 - 4) if i % 4 else None,
            created_at=NOW - timedelta(minutes=i // 2),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("size", [1, 7, 50, 120])
def test_pages_cover_every_alert_once_forwards_and_backwards(size: int) -> None:
    alerts = _alerts(103)
    want = [a["alert_id"] for a in sorted(alerts, key=lambda a: alertpages.key_of("work", a))]
    pages: list[alertpages.AlertPage] = []
    after: alertpages.Key | None = None
    while True:
        page = alertpages.page_of(PageQuery(limit=size, after=after), alerts, now=NOW)
        assert page.offset == sum(len(p.alerts) for p in pages)
        pages.append(page)
        if page.next_key is None:
            break
        after = page.next_key
    assert [a["alert_id"] for p in pages for a in p.alerts] == want
    assert pages[0].prev_key is None and all(p.counts.total == 103 for p in pages)
    back, before = [pages[-1]], pages[-1].prev_key
    while before is not None:
        back.append(alertpages.page_of(PageQuery(limit=size, before=before), alerts, now=NOW))
        before = back[-1].prev_key
    assert [a["alert_id"] for p in reversed(back) for a in p.alerts] == want


def test_the_counts_are_of_the_whole_filter() -> None:
    alerts = [
        alert("a", due_at=NOW - timedelta(minutes=1)),  # open, overdue
        alert("b", due_at=NOW - timedelta(minutes=1), status="acknowledged", acknowledged_at=NOW),  # handled
        alert("c", escalated_at=NOW),  # open, escalated
        alert("d", escalated_at=NOW, status="resolved", acknowledged_at=NOW),  # resolved: not counted
    ]
    page = alertpages.page_of(PageQuery(limit=1), alerts, now=NOW)
    assert len(page.alerts) == 1
    assert page.counts == alertpages.PageCounts(total=4, open=2, overdue=1, escalated=1)
