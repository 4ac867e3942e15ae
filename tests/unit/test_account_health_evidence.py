"""What the health model reads: satisfaction facts from ratings, usage aggregated over contacts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.actions.health.evidence import (
    Evidence,
    Observation,
    RatingPoint,
    pool,
    reading,
    relative_change,
)
from services.actions.health.model import parse_health_model
from services.actions.health.score import evaluate
from services.scorer.domain import wilson_interval
from shared.events import AccountRef, Consent, CustomerRef, RatingSubmitted
from shared.scales import Metric, NpsClass, Sentiment
from tests.unit.health_support import AS_OF, model, rated, seen, signal

DAY = timedelta(days=1)


THRESHOLDS = {
    "nps": [[-100, 0], [100, 100]],
    "satisfaction_trend": [[-100, 0], [100, 100]],
    "days_since_answer": [[0, 100], [1000, 0]],
    "open_alerts": [[0, 100], [1000, 0]],
}


def fact(name: str, **extra: Any) -> dict[str, Any]:
    worse = name in ("days_since_answer", "open_alerts")
    return {
        "id": "f",
        "fact": name,
        "direction": "higher_is_worse" if worse else "higher_is_better",
        "normalise": {"thresholds": THRESHOLDS.get(name, [[0, 0], [100, 100]])},
        "weight": 1,
        **extra,
    }


def read(spec: dict[str, Any], evidence: Evidence) -> Any:
    (component,) = model(spec).components
    return reading(component, evidence, as_of=AS_OF)


# ---- satisfaction facts ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scores", "positive"),
    [([5, 5, 4, 3, 1], 3), ([4] * 30 + [2] * 10, 30), ([1], 0), ([5], 1), ([3, 3, 3, 3], 0)],
)
def test_csat_is_exact_counts_with_the_scorers_wilson_interval(scores: list[int], positive: int) -> None:
    ratings = [rated(s, ago=timedelta(days=i + 1), rid=f"r{i}") for i, s in enumerate(scores)]
    got = read(fact("csat", window="90d"), Evidence(ratings))
    n = len(scores)
    low, high = wilson_interval(positive, n)
    assert low is not None and high is not None
    assert got.value == 100 * positive / n
    assert got.detail == {
        "n": n,
        "positive": positive,
        "ci_low": round(100 * low, 2),
        "ci_high": round(100 * high, 2),
    }


@pytest.mark.parametrize(
    ("spec", "ratings", "value", "reason"),
    [
        # the window: (as_of - window, as_of]; an answer on the far edge is out, one in the future too
        (fact("csat", window="30d"), [rated(5, ago=30 * DAY), rated(1, ago=29 * DAY)], 0.0, None),
        (fact("csat", window="30d"), [rated(5, ago=-DAY)], None, "0 csat answers in 30d, fewer than 1"),
        # minimum evidence
        (
            fact("csat", min_n=3),
            [rated(5, ago=DAY), rated(5, ago=2 * DAY)],
            None,
            "2 csat answers in 90d, fewer than 3",
        ),
        (fact("csat", min_n=2), [rated(5, ago=DAY), rated(2, ago=2 * DAY)], 50.0, None),
        # CSAT reads only CSAT answers; NPS only NPS answers
        (
            fact("csat"),
            [rated(10, metric=Metric.NPS, scale="0-10")],
            None,
            "0 csat answers in 90d, fewer than 1",
        ),
        (
            fact("nps"),
            [
                rated(s, metric=Metric.NPS, scale="0-10", ago=(i + 1) * DAY, rid=f"n{i}")
                for i, s in enumerate([10, 9, 8, 6, 0])
            ],
            0.0,
            None,
        ),
        (
            fact("nps"),
            [
                rated(s, metric=Metric.NPS, scale="0-10", ago=(i + 1) * DAY, rid=f"n{i}")
                for i, s in enumerate([10, 9, 9, 7])
            ],
            75.0,
            None,
        ),
        # the latest answer (ties at one instant: the greater rating id), 0-100 whatever its scale
        (fact("last_answer"), [rated(5, ago=3 * DAY), rated(2, ago=DAY)], 25.0, None),
        (fact("last_answer"), [rated(1, ago=DAY, rid="a"), rated(5, ago=DAY, rid="b")], 100.0, None),
        (
            fact("last_answer", metric="nps"),
            [rated(2, ago=DAY), rated(7, metric=Metric.NPS, scale="0-10", ago=9 * DAY)],
            70.0,
            None,
        ),
        (fact("last_answer"), [], None, "0 answers in 365d, fewer than 1"),
        # days since the latest answer (no window: a year-old answer still counts)
        (
            fact("days_since_answer"),
            [rated(4, ago=400 * DAY), rated(4, ago=12 * DAY + timedelta(hours=12))],
            12.5,
            None,
        ),
        (fact("days_since_answer", metric="nps"), [rated(4, ago=DAY)], None, "no nps answers yet"),
        # the trend: points (0-100) per 30 days, least squares over time
        (
            fact("satisfaction_trend"),
            [rated(5, ago=60 * DAY), rated(4, ago=30 * DAY), rated(3, ago=0 * DAY)],
            -25.0,
            None,
        ),
        (
            fact("satisfaction_trend"),
            [rated(1, ago=90 * DAY), rated(5, ago=30 * DAY), rated(5, ago=0 * DAY)],
            1500 / 42,
            None,
        ),
        (
            fact("satisfaction_trend"),
            [rated(5, ago=60 * DAY), rated(5, ago=30 * DAY)],
            None,
            "2 answers in 180d, fewer than 3",
        ),
        (
            fact("satisfaction_trend", min_n=2),
            [rated(5, ago=DAY, rid="a"), rated(1, ago=DAY, rid="b")],
            None,
            "the 2 answers in 180d are all at one instant",
        ),
    ],
)
def test_satisfaction_facts(
    spec: dict[str, Any], ratings: list[RatingPoint], value: float | None, reason: str | None
) -> None:
    got = read(spec, Evidence(ratings))
    assert got.value == (pytest.approx(value) if value is not None else None)
    assert got.reason == reason


def test_open_alerts_is_never_missing() -> None:
    assert read(fact("open_alerts"), Evidence()).value == 0.0
    assert read(fact("open_alerts"), Evidence(open_alerts=3)).value == 3.0


def test_a_rating_event_becomes_a_point() -> None:
    event = RatingSubmitted(
        rating_id="r-1",
        metric=Metric.NPS,
        scale="0-10",
        score=9,
        normalized=0.9,
        sentiment=Sentiment.POSITIVE,
        positive=True,
        nps_class=NpsClass.PROMOTER,
        customer=CustomerRef(id="cus_1"),
        account=AccountRef(id="acc_1"),
        consent=Consent(),
        occurred_at=AS_OF,
        received_at=AS_OF,
    )
    point = RatingPoint.of(event)
    assert (point.customer_id, point.metric, point.score, point.nps_class) == (
        "cus_1",
        Metric.NPS,
        9,
        NpsClass.PROMOTER,
    )


# ---- usage signals and accounts --------------------------------------------------------------------
CONTACTS = [
    seen({"logins_7d": 4}, customer="ana", ago=2 * DAY),
    seen({"logins_7d": 10}, customer="ana", ago=9 * DAY),  # older: ana's latest is 4
    seen({"logins_7d": 1}, customer="bob", ago=DAY),
    seen({"logins_7d": 7}, customer="eve", ago=5 * DAY),
    seen({"logins_7d": 99}, customer="old", ago=40 * DAY),  # beyond max_age (30d): missing
    seen({"tickets_open": 2}, customer="zed", ago=DAY),  # another signal
]


@pytest.mark.parametrize(
    ("aggregate", "value", "contacts"),
    [("sum", 12.0, 3), ("max", 7.0, 3), ("mean", 4.0, 3), ("latest", 1.0, 3)],
)
def test_account_usage_aggregates_each_contacts_latest_fresh_value(
    aggregate: str, value: float, contacts: int
) -> None:
    got = read(signal("logins_7d", aggregate=aggregate), Evidence(observations=CONTACTS))
    assert got.value == value
    assert got.detail == {"contacts": contacts, "source": "contacts"}


@pytest.mark.parametrize(
    ("account_ago", "value"),
    [(3 * DAY, 20.0), (29 * DAY, 20.0), (31 * DAY, 12.0)],  # fresh account figure wins; a stale one does not
)
def test_a_figure_for_the_account_itself_wins_over_its_contacts(account_ago: timedelta, value: float) -> None:
    evidence = Evidence(observations=[*CONTACTS, seen({"logins_7d": 20}, ago=account_ago)])
    assert read(signal("logins_7d", aggregate="sum"), evidence).value == value


@pytest.mark.parametrize(
    ("max_age", "value", "reason"),
    [("30d", 12.0, None), ("3d", 5.0, None), ("12h", None, "no logins_7d observed in the 0.5d before")],
)
def test_max_age(max_age: str, value: float | None, reason: str | None) -> None:
    got = read(signal("logins_7d", aggregate="sum", max_age=max_age), Evidence(observations=CONTACTS))
    assert (got.value, got.reason) == (value, reason)


@pytest.mark.parametrize(
    ("history", "value", "reason"),
    [
        ([(0, 6), (30, 8)], -25.0, None),  # 8 -> 6
        ([(0, 12), (30, 8)], 50.0, None),
        ([(0, 0), (30, 0)], 0.0, None),
        ([(0, 3), (30, 0)], 100.0, None),  # from zero: any rise is +100 %
        ([(0, 5), (20, 8)], None, "no logins_7d 30d earlier to compare with"),  # nothing in force 30 days ago
        ([(45, 8)], None, "no logins_7d observed in the 30d before"),
    ],
)
def test_change_over_a_period(
    history: list[tuple[int, float]], value: float | None, reason: str | None
) -> None:
    obs = [seen({"logins_7d": v}, customer="ana", ago=timedelta(days=d, hours=1)) for d, v in history]
    got = read(signal("logins_7d", aggregate="sum", change_over="30d"), Evidence(observations=obs))
    assert (got.value, got.reason) == (value, reason)


@pytest.mark.parametrize(
    ("before", "now", "change"), [(10, 5, -50.0), (-10, -5, 50.0), (0, -2, -100.0), (4, 4, 0.0)]
)
def test_relative_change(before: float, now: float, change: float) -> None:
    assert relative_change(before, now) == change


def test_an_account_pools_its_contacts() -> None:
    """Satisfaction from every contact's answers (exact counts), usage by the declared rule, alerts summed."""
    ana = Evidence(
        ratings=[rated(5, customer="ana", ago=DAY), rated(4, customer="ana", ago=2 * DAY)],
        observations=[seen({"logins_7d": 6}, customer="ana")],
        open_alerts=1,
    )
    bob = Evidence(
        ratings=[rated(1, customer="bob", ago=DAY), rated(2, customer="bob", ago=3 * DAY)],
        observations=[seen({"logins_7d": 2}, customer="bob")],
        open_alerts=2,
    )
    duplicate = Evidence(ratings=[ana.ratings[0]], observations=[ana.observations[0]])
    account = pool(
        [ana, bob, duplicate], account_observations=[seen({"seats_active": 12}, customer="ignored")]
    )
    assert (len(account.ratings), len(account.observations), account.open_alerts) == (4, 3, 3)
    m = parse_health_model(
        {
            "components": [
                {
                    **fact("csat"),
                    "id": "csat",
                    "normalise": {"thresholds": [[0, 0], [100, 100]]},
                    "weight": 2,
                },
                signal("logins_7d", aggregate="mean", thresholds=[[0, 0], [8, 100]]),
                signal("seats_active", aggregate="sum"),
                {**fact("open_alerts"), "id": "alerts", "normalise": {"thresholds": [[0, 100], [4, 0]]}},
            ]
        }
    )
    result = evaluate(m, account, as_of=AS_OF)
    csat, logins, seats, alerts = result.components
    assert (csat.value, csat.detail["n"], csat.detail["positive"]) == (50.0, 4, 2)
    assert (logins.value, logins.normalised) == (4.0, 50.0)
    assert (seats.value, seats.detail["source"]) == (12.0, "account")
    assert (alerts.value, alerts.normalised) == (3.0, 25.0)
    assert result.score == pytest.approx((2 * 50 + 50 + 12 + 25) / 5, abs=0.05)
    assert sum(c.points for c in result.components) == pytest.approx(result.score)


def test_a_single_customer_is_an_account_of_one() -> None:
    ana = Evidence(ratings=[rated(5, customer="ana")], observations=[seen({"logins_7d": 6}, customer="ana")])
    m = model(signal("logins_7d", aggregate="sum"), {**fact("csat"), "id": "csat"})
    assert evaluate(m, ana, as_of=AS_OF) == evaluate(m, pool([ana]), as_of=AS_OF)


def test_an_observation_event_becomes_an_observation() -> None:
    from shared.events import UsageObserved

    event = UsageObserved(
        observation_id="o1",
        customer_id="ana",
        account_id="acc",
        observed_at=datetime(2026, 1, 1, tzinfo=UTC),
        received_at=datetime(2026, 1, 1, tzinfo=UTC),
        signals={"logins_7d": 3.0},
    )
    assert Observation.of(event) == Observation(
        "o1", "ana", datetime(2026, 1, 1, tzinfo=UTC), {"logins_7d": 3.0}
    )
