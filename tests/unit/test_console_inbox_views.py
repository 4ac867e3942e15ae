"""The pure parts of the Alerts, Verbatims and Customer views: who sees which alert, the inbox's order
and SLA states, the addresses' filters, the theme trend's bars, the CSV, the customer page's reader."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.console import alertview, customerview, verbatimview
from services.console.alertview import FilterError
from shared.identity.principal import Principal, PrincipalKind
from shared.identity.scopes import ROLE_SCOPES, Role

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def person(role: Role, *, email: str | None = None, accounts: frozenset[str] = frozenset()) -> Principal:
    return Principal(
        subject="u-1",
        kind=PrincipalKind.PERSON,
        role=role,
        scopes=ROLE_SCOPES[role],
        accounts=accounts,
        owner_email=email if role is Role.CSM else None,
    )


def alert(aid: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "alert_id": aid,
        "rule_id": "r",
        "customer_id": f"cus-{aid}",
        "owner_email": "carla@example.com",
        "priority": "normal",
        "status": "open",
        "created_at": (NOW - timedelta(hours=1)).isoformat(),
        "context": {"rating": {"score": 2, "scale": "1-5", "metric": "csat"}, "customer": {}},
    }
    body.update(kw)
    return body


# ---- alerts --------------------------------------------------------------------------------------------
def test_a_csm_sees_alerts_by_owner_address_or_account_and_a_manager_sees_all() -> None:
    mine = alertview.row_of(alert("a", owner_email="Carla@Example.com"))
    by_account = alertview.row_of(
        alert("b", owner_email="dan@example.com", context={"customer": {"account_id": "acc-7"}})
    )
    other = alertview.row_of(alert("c", owner_email="dan@example.com"))
    carla = person(Role.CSM, email="carla@example.com", accounts=frozenset({"acc-7"}))
    assert [alertview.visible_to(carla, r) for r in (mine, by_account, other)] == [True, True, False]
    assert all(alertview.visible_to(person(Role.MANAGER), r) for r in (mine, by_account, other))


def test_the_inbox_order_is_the_working_order() -> None:
    bodies = [
        alert("done", status="resolved"),
        alert("acked", status="acknowledged", acknowledged_at=NOW.isoformat()),
        alert("normal-old", created_at=(NOW - timedelta(days=2)).isoformat()),
        alert("normal-new"),
        alert("high-late", priority="high", due_at=(NOW + timedelta(hours=20)).isoformat()),
        alert("high-soon", priority="high", due_at=(NOW + timedelta(hours=1)).isoformat()),
        alert("escalated", priority="low", escalated_at=NOW.isoformat()),
    ]
    rows = alertview.inbox(person(Role.MANAGER), alertview.InboxQuery(status="all"), bodies)
    assert [r.alert_id for r in rows] == [
        "escalated",
        "high-soon",
        "high-late",
        "normal-new",
        "normal-old",
        "acked",
        "done",
    ]
    active = alertview.inbox(person(Role.MANAGER), alertview.InboxQuery(), bodies)
    assert "done" not in [r.alert_id for r in active] and len(active) == 6


@pytest.mark.parametrize(
    ("due", "acknowledged", "state"),
    [
        (None, False, "none"),
        (timedelta(hours=5), False, "ok"),
        (timedelta(hours=2), False, "soon"),
        (timedelta(minutes=-1), False, "overdue"),
        (timedelta(minutes=-1), True, "met"),
    ],
)
def test_sla_states(due: timedelta | None, acknowledged: bool, state: str) -> None:
    body = alert("x", due_at=(NOW + due).isoformat() if due is not None else None)
    if acknowledged:
        body.update(status="acknowledged", acknowledged_at=NOW.isoformat())
    assert alertview.row_of(body).sla(NOW).state == state


def test_durations_and_filters() -> None:
    assert alertview.duration_parts(timedelta(days=1, hours=3, minutes=4)) == (1, 3, 4)
    assert alertview.duration_parts(timedelta(minutes=-75)) == (0, 1, 15)
    q = alertview.parse_query(status="OPEN", priority="high", escalated="1")
    assert q == alertview.InboxQuery(status="open", priority="high", escalated=True)
    assert q.params() == [("status", "open"), ("priority", "high"), ("escalated", "1")]
    for kw, field in (
        ({"status": "closed"}, "status"),
        ({"priority": "p1"}, "priority"),
        ({"escalated": "x"}, "escalated"),
    ):
        args = {"status": None, "priority": None, "escalated": None, **kw}
        with pytest.raises(FilterError) as refused:
            alertview.parse_query(**args)
        assert refused.value.field == field


def test_a_comment_excerpt_is_cut_on_a_word_boundary_with_an_ellipsis() -> None:
    row = alertview.row_of(alert("x", context={"rating": {"comment": "word " * 60}}))
    excerpt = row.excerpt(40)
    assert excerpt is not None and len(excerpt) <= 40 and excerpt.endswith("…")


# ---- verbatims -----------------------------------------------------------------------------------------
def parse(**kw: Any) -> verbatimview.VerbatimsQuery:
    args: dict[str, Any] = dict.fromkeys(
        (
            "metric",
            "window",
            "since",
            "until",
            "score_min",
            "score_max",
            "theme",
            "sentiment",
            "language",
            "q",
            "page",
        )
    )
    args["segment"] = None
    args.update(kw)
    return verbatimview.parse_query(**args)


def test_the_verbatims_address_round_trips_and_asks_the_scorer() -> None:
    q = parse(
        segment=["store:paris-1"], theme="delivery_time", sentiment="Negative", q="  colis   abîmé ", page="2"
    )
    assert (
        q.query()
        == "segment=store%3Aparis-1&theme=delivery_time&sentiment=negative&q=colis+ab%C3%AEm%C3%A9&page=2"
    )
    assert q.api_params() == {
        "segment": ["store:paris-1"],
        "page": 2,
        "per_page": verbatimview.PER_PAGE,
        "theme": "delivery_time",
        "sentiment": "negative",
        "q": "colis abîmé",
        "window": "30d",
    }
    dated = parse(since="2026-11-01", until="2026-11-30", window="7d")
    assert "window" not in dated.api_params() and dated.api_params()["from"] == "2026-11-01"
    assert dated.query() == "from=2026-11-01&to=2026-11-30"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"metric": "wow"}, "metric"),
        ({"window": "forever"}, "window"),
        ({"since": "2026-13-01"}, "from"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "from"),
        ({"score_min": "x"}, "score_min"),
        ({"score_min": "5", "score_max": "2"}, "score_min"),
        ({"score_max": "11"}, "score_max"),
        ({"theme": "Delivery Time"}, "theme"),
        ({"sentiment": "angry"}, "sentiment"),
        ({"language": "de"}, "language"),
        ({"q": "x" * 201}, "q"),
        ({"page": "0"}, "page"),
        ({"segment": ["paris"]}, "segment"),
    ],
)
def test_the_verbatims_address_refuses_and_names_the_field(kw: dict[str, Any], field: str) -> None:
    with pytest.raises(verbatimview.FilterError) as refused:
        parse(**kw)
    assert refused.value.field == field
    assert field in verbatimview.FIELDS


def test_the_theme_trend_bars_scale_to_the_highest_bucket() -> None:
    spark = verbatimview.spark([{"count": 0}, {"count": 2}, {"count": 4}], height=20)
    assert spark.counts == (0, 2, 4) and spark.width == 14
    assert [(b.x, b.height, b.y) for b in spark.bars] == [(0, 0, 20), (5, 10, 10), (10, 20, 0)]


def test_the_verbatims_csv_is_the_items_with_formulas_defused() -> None:
    items = [
        {
            "occurred_at": "2026-12-01T10:00:00+00:00",
            "rating_id": "r1",
            "customer_id": "c1",
            "metric": "csat",
            "scale": "1-5",
            "score": 1,
            "segment": {"store": "paris-1", "channel": "web"},
            "touchpoint": None,
            "themes": ["delivery_time", "price"],
            "sentiment": "negative",
            "language": "fr",
            "comment": "=1+1, « très » cher",
        }
    ]
    text = verbatimview.csv_file(items)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert rows == [
        {
            "occurred_at": "2026-12-01T10:00:00+00:00",
            "rating_id": "r1",
            "customer_id": "c1",
            "metric": "csat",
            "scale": "1-5",
            "score": "1",
            "segment": "channel:web;store:paris-1",
            "touchpoint": "",
            "themes": "delivery_time;price",
            "sentiment": "negative",
            "language": "fr",
            "comment": "'=1+1, « très » cher",
        }
    ]


# ---- customer ------------------------------------------------------------------------------------------
def page(**kw: Any) -> customerview.CustomerPage:
    args: dict[str, Any] = {"context": None, "history": None, "alerts": [], "deliveries": None}
    args.update(kw)
    return customerview.assemble("cus-1", **args)


def test_who_reads_a_customer() -> None:
    owned = page(context={"owner_email": "carla@example.com"})
    by_account = page(
        alerts=[alert("a", owner_email="x@example.com", context={"customer": {"account_id": "acc-7"}})]
    )
    carla = person(Role.CSM, email="carla@example.com", accounts=frozenset({"acc-7"}))
    dan = person(Role.CSM, email="dan@example.com")
    assert customerview.readable_by(carla, owned) and customerview.readable_by(carla, by_account)
    assert not customerview.readable_by(dan, owned) and not customerview.readable_by(dan, by_account)
    assert customerview.readable_by(person(Role.MANAGER), owned)
    assert not customerview.readable_by(person(Role.MANAGER), page())  # nothing stored: as if absent


def test_the_history_chart_places_ratings_by_time_and_score() -> None:
    ratings = [  # newest first, as the scorer gives them
        {
            "occurred_at": (NOW - timedelta(days=0)).isoformat(),
            "normalized": 25.0,
            "score": 2,
            "scale": "1-5",
        },
        {
            "occurred_at": (NOW - timedelta(days=10)).isoformat(),
            "normalized": 100.0,
            "score": 5,
            "scale": "1-5",
        },
    ]
    chart = customerview.chart(ratings, width=112, height=112, pad=6)
    assert [(p.x, p.y, p.label) for p in chart.points] == [(6.0, 6.0, "5/1-5"), (106.0, 81.0, "2/1-5")]
    assert chart.polyline == "6.0,6.0 106.0,81.0"
    assert customerview.chart([]).points == ()
    assert (
        customerview.delivery_state("sending") == "waiting"
        and customerview.delivery_state("odd") == "unknown"
    )


def test_whose_health_the_customer_page_shows() -> None:
    in_context = page(context={"attributes": {"account_id": "acc-1"}})
    by_alert = page(alerts=[alert("a", context={"customer": {"account_id": "acc-7"}})])
    assert customerview.health_subject("cus-1", in_context) == ("account", "acc-1")
    assert customerview.health_subject("cus-1", by_alert) == ("account", "acc-7")
    assert customerview.health_subject("cus-1", page()) == ("customer", "cus-1")
    body = {
        "score": 46.3,
        "band": "at_risk",
        "band_since": "2026-12-01T10:00:00+00:00",
        "delta_30d": -4.5,
        "explanation": [
            {"id": "csat_90d", "status": "counted", "value": 66.7, "points": 9.4, "max_points": 21.1},
            {
                "id": "trend",
                "status": "skipped",
                "value": None,
                "points": 0.0,
                "max_points": 0.0,
                "reason": "few",
            },
        ],
    }
    health = customerview.health_of("account", "acc-1", body)
    assert health is not None and health.score == 46.3 and health.band == "at_risk"
    assert [(x.name, x.value, x.points, x.reason) for x in health.lines] == [
        ("csat 90d", 66.7, 9.4, None),
        ("trend", None, 0.0, "few"),
    ]
    assert customerview.health_of("account", "acc-1", None) is None
    assert customerview.health_of("account", "acc-1", {**body, "band": "<script>"}).band is None  # type: ignore[union-attr]


def test_the_erasure_goes_ahead_only_on_the_exact_customer_id() -> None:
    assert customerview.confirmed("cus-1", "cus-1") and customerview.confirmed("cus-1", "  cus-1 ")
    for typed in (None, "", "cus-2", "CUS-1", "cus-1x", "cus"):
        assert not customerview.confirmed("cus-1", typed)
