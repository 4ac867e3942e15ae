"""Segments, caps, significance tests, event decisions and customer trends (pure scorer logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.scorer import domain
from services.scorer.repository.registry import Registry
from services.scorer.segments import (
    KEY_SEPARATOR,
    RegistryView,
    counted_keys,
    normalise_combinations,
    plan_dimensions,
    plan_registration,
)
from services.scorer.signals import (
    BELOW_THRESHOLD,
    DropTest,
    SegmentState,
    decide,
    drop_test,
    is_significant_drop,
    normal_cdf,
    threshold_for,
)
from services.scorer.trend import Point, trend
from shared.scales import Metric


# ---- keys --------------------------------------------------------------------------------------------
def test_values_cannot_forge_another_segments_key() -> None:
    forged = domain.segment_key({"channel": "x|store=y"})
    real = domain.segment_key({"channel": "x", "store": "y"})
    assert forged != real
    assert domain.parse_segment_key(forged) == {"channel": "x|store=y"}
    assert domain.parse_segment_key(real) == {"channel": "x", "store": "y"}
    assert domain.segment_key({"store": "50%=off"}) == "store=50%25%3Doff"


@pytest.mark.parametrize("attrs", [{}, {"store": "paris-1"}, {"a": "%7C", "b": "=|%"}])
def test_key_round_trip(attrs: dict[str, str]) -> None:
    assert domain.parse_segment_key(domain.segment_key(attrs)) == attrs


# ---- caps --------------------------------------------------------------------------------------------
def test_registration_is_sorted_and_capped() -> None:
    register, fold = plan_registration(
        {"store": {"c", "a", "b", "other"}, "channel": {"chat"}}, registered_counts={"store": 1}, cap=3
    )
    assert register == {"store": ["a", "b"], "channel": ["chat"]}
    assert fold == {"store": ["c"]}
    assert plan_dimensions({"z", "a", "m"}, registered=48, cap=50) == (["a", "m"], ["z"])


def test_fold_with_a_registry() -> None:
    registry = Registry(max_values=10, max_dimensions=10, combinations=[("channel", "store")])
    view = registry.view
    view.learn(dimensions=["store", "channel"], dropped=["spam"], registered=[("store", "paris-1")])
    counted = registry.counted({"store": "lyon-9", "channel": "other", "spam": "x"})
    assert counted.keys.split(KEY_SEPARATOR) == [
        "*",
        "channel=other",
        "store=other",
        "channel=other|store=other",
    ]
    assert (counted.folded, counted.dropped) == (("store",), 1)
    assert view.unknown([{"store": "paris-1", "channel": "chat", "spam": "y", "new": "v"}]) == {
        ("channel", "chat"),
        ("new", "v"),
    }


def test_folded_cache_is_bounded() -> None:
    view = RegistryView(max_folded_cache=2)
    view.learn(dimensions=["d"], folded=[("d", "a"), ("d", "b")])
    assert view.knows("d", "a")
    view.learn(folded=[("d", "c")])
    assert view.knows("d", "c") and not view.knows("d", "a")


def test_counted_keys_use_folded_values_and_combinations() -> None:
    combos = normalise_combinations([["store", "channel"], ["channel", "store"], ["store"]])
    assert combos == [("channel", "store")]
    keys = counted_keys({"store": "other", "channel": "chat", "country": "fr"}, combos)
    assert keys == ["*", "channel=chat", "country=fr", "store=other", "channel=chat|store=other"]
    assert counted_keys({"country": "fr"}, combos) == ["*", "country=fr"]


# ---- significance ------------------------------------------------------------------------------------
def csat(positive: int, negative: int) -> dict[tuple[str, int], int]:
    return {("1-5", 5): positive, ("1-5", 1): negative}


def test_normal_cdf() -> None:
    assert normal_cdf(0) == pytest.approx(0.5)
    assert normal_cdf(-1.959964) == pytest.approx(0.025, abs=1e-6)


def test_same_drop_is_noise_on_few_answers_and_real_on_many() -> None:
    def p(cur: dict[tuple[str, int], int], prev: dict[tuple[str, int], int]) -> float:
        c, q = domain.summarize(Metric.CSAT, cur), domain.summarize(Metric.CSAT, prev)
        test = drop_test(Metric.CSAT, cur, prev, c, q)
        assert test is not None
        return test.p_value

    # 70 % -> 60 %
    assert p(csat(12, 8), csat(14, 6)) > 0.05
    assert p(csat(1200, 800), csat(1400, 600)) < 1e-6
    # A rise is never a significant drop.
    assert p(csat(1400, 600), csat(1200, 800)) > 0.99


@pytest.mark.parametrize(
    ("z", "p", "n_cur", "n_prev", "significant"),
    [
        (-3.0, 0.001, 30, 30, True),
        (-3.0, 0.001, 29, 30, False),  # too few answers in the current window
        (-3.0, 0.001, 30, 29, False),  # ... or in the previous one
        (-1.5, 0.067, 100, 100, False),  # not at alpha 0.05
        (3.0, 0.001, 100, 100, False),  # a rise is not a drop, whatever its p-value
    ],
)
def test_the_one_look_verdict(z: float, p: float, n_cur: int, n_prev: int, significant: bool) -> None:
    test = DropTest(z, p)
    assert (
        is_significant_drop(test, current_n=n_cur, previous_n=n_prev, alpha=0.05, min_responses=30)
        is significant
    )
    assert not is_significant_drop(None, current_n=100, previous_n=100, alpha=0.05, min_responses=30)


def test_two_proportion_z_matches_the_textbook() -> None:
    # p1 = 0.6 (n=200), p2 = 0.7 (n=200): pooled 0.65, se = sqrt(.65*.35*(2/200)) = 0.04770, z = -2.0966
    cur, prev = csat(120, 80), csat(140, 60)
    test = drop_test(
        Metric.CSAT, cur, prev, domain.summarize(Metric.CSAT, cur), domain.summarize(Metric.CSAT, prev)
    )
    assert test is not None
    assert test.z == pytest.approx(-2.0966, abs=1e-3)
    assert test.p_value == pytest.approx(0.01801, abs=1e-4)


def test_nps_and_ces_drop_tests() -> None:
    nps_prev = {("0-10", 10): 60, ("0-10", 8): 20, ("0-10", 3): 20}
    nps_cur = {("0-10", 10): 30, ("0-10", 8): 30, ("0-10", 3): 40}
    test = drop_test(
        Metric.NPS,
        nps_cur,
        nps_prev,
        domain.summarize(Metric.NPS, nps_cur),
        domain.summarize(Metric.NPS, nps_prev),
    )
    assert test is not None and test.z < 0 and test.p_value < 0.001
    ces_prev = {("1-7", 7): 50, ("1-7", 6): 50}
    ces_cur = {("1-7", 7): 50, ("1-7", 6): 49, ("1-7", 1): 1}
    test = drop_test(
        Metric.CES,
        ces_cur,
        ces_prev,
        domain.summarize(Metric.CES, ces_cur),
        domain.summarize(Metric.CES, ces_prev),
    )
    assert test is not None and test.z < 0 and test.p_value > 0.05
    empty = domain.summarize(Metric.CSAT, {})
    assert drop_test(Metric.CSAT, {}, csat(1, 1), empty, domain.summarize(Metric.CSAT, csat(1, 1))) is None


# ---- thresholds and decisions --------------------------------------------------------------------------
THRESHOLDS = {"csat": {"default": 70.0, "store": 75.0, "store=paris-1": 80.0, "channel|store": 72.0}}


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        ("*", 70.0),
        ("store=lyon", 75.0),
        ("store=paris-1", 80.0),
        ("channel=chat|store=x", 72.0),
        ("country=fr", 70.0),
    ],
)
def test_threshold_lookup(segment: str, expected: float) -> None:
    assert threshold_for(THRESHOLDS, Metric.CSAT, segment) == expected
    assert threshold_for(THRESHOLDS, Metric.NPS, segment) is None


def run(
    cur: dict[tuple[str, int], int], prev: dict[tuple[str, int], int], state: SegmentState, **kw: float
) -> tuple[SegmentState, bool, list[str], str | None]:
    del prev  # the previous window no longer decides anything here (the one-look test is the API's)
    c = domain.summarize(Metric.CSAT, cur)
    d = decide(
        metric=Metric.CSAT,
        window="7d",
        segment="store=paris-1",
        current=c,
        state=state,
        threshold=kw.get("threshold", 70.0),
        min_delta=kw.get("min_delta", 0.0),
    )
    return d.state, d.changed, [a.reason for a in d.alerts], d.event_id


def test_first_score_is_published_then_only_moves() -> None:
    s, changed, alerts, eid = run(csat(80, 20), {}, SegmentState())
    assert changed and alerts == [] and eid is not None and s.seq == 1 and s.published
    s2, changed, _, _ = run(csat(80, 20), {}, s)
    assert not changed and s2 == s
    s3, changed, _, eid3 = run(csat(81, 20), {}, s)
    assert changed and s3.seq == 2 and eid3 != eid


def test_min_delta_accumulates_against_the_last_published_score() -> None:
    s, *_ = run(csat(80, 20), {}, SegmentState(), min_delta=1.0)
    s2, changed, *_ = run(csat(805, 195), {}, s, min_delta=1.0)  # 80.5: below the delta
    assert not changed and s2.score == 80.0
    _, changed, *_ = run(csat(81, 19), {}, s2, min_delta=1.0)
    assert changed


def test_nothing_published_for_an_empty_segment() -> None:
    _, changed, alerts, _ = run({}, {}, SegmentState())
    assert not changed and alerts == []


def test_alerts_fire_once_per_episode_with_stable_ids() -> None:
    # A significant drop against the previous window alerts nobody (drift alerts do): only the threshold.
    s, _, alerts, _ = run(csat(600, 400), csat(800, 200), SegmentState())
    assert alerts == [BELOW_THRESHOLD]
    s2, _, again, _ = run(csat(590, 410), csat(800, 200), s)
    assert again == []  # still in the same episode
    recovered, _, none, _ = run(csat(900, 100), csat(800, 200), s2)
    assert none == [] and not recovered.below
    _, _, new_episode, _ = run(csat(600, 400), csat(800, 200), recovered)
    assert new_episode == [BELOW_THRESHOLD]
    # Re-deciding from the same stored state gives the same ids (a crash before saving the state).
    first = decide(
        metric=Metric.CSAT,
        window="7d",
        segment="*",
        current=domain.summarize(Metric.CSAT, csat(10, 90)),
        state=SegmentState(),
        threshold=70.0,
        min_delta=0.0,
    )
    second = decide(
        metric=Metric.CSAT,
        window="7d",
        segment="*",
        current=domain.summarize(Metric.CSAT, csat(10, 90)),
        state=SegmentState(),
        threshold=70.0,
        min_delta=0.0,
    )
    assert [a.alert_id for a in first.alerts] == [a.alert_id for a in second.alerts]
    assert first.event_id == second.event_id


def test_no_threshold_alert_on_an_insufficient_sample() -> None:
    _, _, alerts, _ = run(csat(5, 15), csat(15, 5), SegmentState())
    assert alerts == []


# ---- customer trend ---------------------------------------------------------------------------------------
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_trend_declining_and_slope() -> None:
    points = [Point(T0 + timedelta(days=10 * i), v) for i, v in enumerate([100, 100, 75, 50, 25, 0])]
    t = trend(points, window=2)
    assert t.direction == "declining"
    assert (t.recent_mean, t.previous_mean, t.change) == (12.5, 62.5, -50.0)
    assert t.slope_per_30d is not None and t.slope_per_30d < -50


def test_trend_edges() -> None:
    assert trend([]).direction is None
    one = trend([Point(T0, 80.0)])
    assert (one.ratings, one.mean, one.direction, one.slope_per_30d) == (1, 80.0, None, None)
    flat = trend([Point(T0 + timedelta(days=i), 75.0) for i in range(6)])
    assert flat.direction == "stable" and flat.slope_per_30d == 0.0
    same_time = trend([Point(T0, 0.0), Point(T0, 100.0), Point(T0, 50.0)])
    assert same_time.slope_per_30d is None
