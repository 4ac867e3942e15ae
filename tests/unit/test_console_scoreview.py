"""The Scores and Segments views' decisions (pure): tile states, verdicts, hidden distributions, formats per
locale, significance against the whole, heat-map levels, CSV rows, and the live hub's fan-out."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.console import scoreview as sv
from services.console import segmentview as seg
from services.console.i18n import CATALOGS, Translator
from services.console.live import LiveHub
from shared.identity.principal import Principal, PrincipalKind, SegmentGrant
from shared.identity.scopes import ROLE_SCOPES, Role
from shared.scales import Metric

EN, FR = Translator("en", time_zone=ZoneInfo("UTC")), Translator("fr", time_zone=ZoneInfo("UTC"))


def person(role: Role = Role.MANAGER, grants: list[str] | None = None) -> Principal:
    return Principal(
        subject="u1",
        kind=PrincipalKind.PERSON,
        role=role,
        scopes=ROLE_SCOPES[role],
        segments=None if grants is None else frozenset(SegmentGrant.parse(g) for g in grants),
    )


def body(**values: Any) -> dict[str, Any]:
    """A ``GET /v1/scores`` answer: CSAT 70 % over 1,000, better than the previous period."""
    base: dict[str, Any] = {
        "metric": "csat",
        "score": 70.0,
        "responses": 1000,
        "positive": 700,
        "positive_pct": 70.0,
        "ci_low": 67.1,
        "ci_high": 72.73,
        "insufficient": False,
        "min_sample": 30,
        "band": "good",
        "distribution": {"1-5": {"5": 300, "4": 400, "3": 100, "2": 200}},
        "previous": 65.0,
        "previous_responses": 800,
        "delta": 5.0,
        "z": 2.2,
        "p_value_drop": 0.986,
        "significant_drop": False,
        "significant_rise": True,
        "year_ago": {"score": 72.0, "responses": 20, "delta": -2.0, "z": -0.2, "significant_drop": False},
        "benchmark": {"industry": "all", "csat": 77.0},
        "vs_benchmark": -7.0,
        "from": "2026-11-01T00:00:00+00:00",
        "to": "2026-12-01T00:00:00+00:00",
    }
    return {**base, **values}


# ---- tiles -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("responses", "insufficient", "state"),
    [(0, True, sv.TileState.EMPTY), (12, True, sv.TileState.INSUFFICIENT), (1000, False, sv.TileState.OK)],
)
def test_a_tile_is_empty_insufficient_or_readable(
    responses: int, insufficient: bool, state: sv.TileState
) -> None:
    assert sv.tile(Metric.CSAT, body(responses=responses, insufficient=insufficient)).state is state


def test_a_tile_reads_its_comparisons_and_benchmark() -> None:
    t = sv.tile(Metric.CSAT, body())
    assert (t.score, t.responses, t.ci_low, t.ci_high, t.band) == (70.0, 1000, 67.1, 72.73, "good")
    assert (t.benchmark, t.benchmark_industry, t.vs_benchmark) == (77.0, "all", -7.0)
    assert (t.previous.earlier, t.previous.delta, t.previous.verdict) == (65.0, 5.0, sv.Verdict.RISE)
    # a year ago had 20 answers: below the minimum sample, so not tested whatever the scorer says
    assert (t.year_ago.earlier, t.year_ago.earlier_responses, t.year_ago.verdict) == (
        72.0,
        20,
        sv.Verdict.UNTESTABLE,
    )
    assert [b.count for b in t.distribution.scales[0].bars] == [0, 200, 100, 400, 300]
    assert t.distribution.scales[0].bars[3].share == 0.4 and t.response_rate is None


@pytest.mark.parametrize(
    ("drop", "rise", "n", "earlier", "z", "expected"),
    [
        (True, False, 100, 100, -3.0, sv.Verdict.DROP),
        (False, True, 100, 100, 3.0, sv.Verdict.RISE),
        (False, False, 100, 100, -1.0, sv.Verdict.NONE),
        (True, False, 100, 10, -3.0, sv.Verdict.UNTESTABLE),  # the earlier window is too small
        (False, False, 100, 100, None, sv.Verdict.UNTESTABLE),  # no test possible (constant samples)
        (None, None, 100, 100, 1.0, sv.Verdict.NONE),  # a scorer without the rise test: no claim made
    ],
)
def test_verdicts(drop: Any, rise: Any, n: int, earlier: int, z: Any, expected: sv.Verdict) -> None:
    got = sv.verdict(
        significant_drop=drop,
        significant_rise=rise,
        responses=n,
        earlier_responses=earlier,
        min_sample=30,
        z=z,
    )
    assert got is expected


def test_a_withheld_distribution_is_hidden_not_empty() -> None:
    hidden = body(distribution=None, positive=None, distribution_hidden=True)
    assert sv.tile(Metric.CSAT, hidden).distribution == sv.Distribution(hidden=True)
    assert sv.tile(Metric.CSAT, body(distribution=None)).distribution.hidden  # absent with answers: hidden
    assert not sv.tile(Metric.CSAT, body(responses=0, distribution={})).distribution.hidden


def test_nps_groups_and_ces_easy_share() -> None:
    nps = sv.tile(
        Metric.NPS,
        body(
            metric="nps",
            score=20.0,
            distribution={"0-10": {"10": 5, "8": 3, "2": 2}},
            promoters=5,
            passives=3,
            detractors=2,
        ),
    )
    assert nps.distribution.nps == sv.NpsGroups(5, 3, 2) and len(nps.distribution.scales[0].bars) == 11
    ces = sv.tile(Metric.CES, body(metric="ces", score=5.2, positive_pct=78.0))
    assert (ces.score, ces.easy_pct) == (5.2, 78.0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        (0.42, sv.ResponseRate(0.42, None, None, None, None, False)),
        (
            {"rate": 0.08, "ci_low": 0.05, "ci_high": 0.12, "sent": 300, "answered": 24, "low": True},
            sv.ResponseRate(0.08, 0.05, 0.12, 300, 24, True),
        ),
        (
            {"rate": 0.08, "ci_low": 0.05, "ci_high": 0.12, "invited": 300, "answered": 24, "low": True},
            sv.ResponseRate(0.08, 0.05, 0.12, 300, 24, True),
        ),
        (
            {"rate": 0.3, "invited": 10, "answered": 3, "low": False, "threshold": 0.1},
            sv.ResponseRate(0.3, None, None, 10, 3, False, 0.1),
        ),
        ({"sent": 10}, None),  # no rate: nothing to show
    ],
)
def test_the_response_rate_tile_appears_only_when_the_scorer_reports_one(raw: Any, expected: Any) -> None:
    assert sv.tile(Metric.CSAT, body(response_rate=raw)).response_rate == expected


def test_the_completion_rate_rides_with_the_response_rate() -> None:
    rr = {"rate": 0.08, "invited": 1250, "answered": 100, "low": True}
    done = {"rate": 0.25, "ci_low": 0.17, "ci_high": 0.34, "commented": 25, "answered": 100}
    t = sv.tile(Metric.CSAT, body(response_rate=rr, completion_rate=done))
    assert t.response_rate is not None
    assert t.response_rate.completion == sv.Completion(0.25, 0.17, 0.34, 25, 100)
    alone = sv.tile(Metric.CSAT, body(response_rate=rr, completion_rate=None)).response_rate
    assert alone is not None and alone.completion is None


def test_the_drift_detector_is_read_when_the_scorer_reports_it() -> None:
    detected = {
        "status": "drop_detected",
        "since": "2026-11-20T00:00:00+00:00",
        "drop": {"size": 11.5, "ci_low": 6.0, "ci_high": 17.0},
    }
    d = sv.tile(Metric.CSAT, body(drift=detected)).drift
    assert d is not None and (d.status, d.drop, d.since is not None) == ("drop_detected", 11.5, True)
    assert sv.tile(Metric.CSAT, body(drift={"status": "monitoring"})).drift == sv.Drift(
        "monitoring", None, None, None, None
    )
    assert (
        sv.tile(Metric.CSAT, body()).drift is None
        and sv.tile(Metric.CSAT, body(drift={"status": "new"})).drift is None
    )


# ---- formats -------------------------------------------------------------------------------------------
def test_numbers_follow_the_locale() -> None:
    assert (
        sv.score_text(EN, Metric.CSAT, 70.0) == "70.0%"
        and sv.score_text(FR, Metric.CSAT, 70.0) == "70,0\u00a0%"
    )
    assert sv.score_text(EN, Metric.NPS, 12.5) == "+12.5" and sv.score_text(FR, Metric.NPS, -3.0) == "-3,0"
    assert sv.score_text(FR, Metric.CES, 5.2) == "5,20" and sv.score_text(EN, Metric.CSAT, None) == "—"
    assert sv.interval_text(EN, Metric.CSAT, 67.1, 72.73) == "67.1% to 72.7%"
    assert sv.interval_text(FR, Metric.CSAT, 67.1, 72.73) == "67,1\u00a0% à 72,7\u00a0%"
    assert (
        sv.delta_text(EN, Metric.CSAT, 5.0) == "+5.0 pts"
        and sv.delta_text(FR, Metric.CSAT, -2.25) == "-2,2 pts"
    )
    assert sv.delta_text(EN, Metric.CES, 0.25) == "+0.25"


def test_keys_built_from_names_exist_in_both_languages() -> None:
    dynamic = {f"scores.verdict.{v.value}" for v in sv.Verdict}
    dynamic |= {f"scores.band.{b}" for b in ("world-class", "excellent", "good", "fair", "critical")}
    dynamic |= {f"scores.industry.{i}" for i in ("all", "ecommerce", "saas", "banks", "travel", "healthcare")}
    dynamic |= {f"scores.industry.{i}" for i in ("airlines", "streaming", "fast_food", "social_media", "isp")}
    dynamic |= {f"segments.sort.{s}" for s in seg.SORTS} | {f"scores.drift.{s}" for s in sv.DRIFT_STATUSES}
    dynamic |= {f"segments.level{i}{nps}" for i in range(1, 6) for nps in ("", "_nps")}
    for catalog in CATALOGS.values():
        assert dynamic - set(catalog) == set()


# ---- filters ------------------------------------------------------------------------------------------
def test_filters_refuse_what_the_scorer_would() -> None:
    f = sv.parse_filters(metric="NPS", window="7d", segment=["store:paris-1", "", "channel:chat"])
    assert (f.metric, f.window, f.segment) == (Metric.NPS, "7d", (("channel", "chat"), ("store", "paris-1")))
    assert f.query(metric="ces") == "metric=ces&window=7d&segment=channel%3Achat&segment=store%3Aparis-1"
    for bad in (
        {"metric": "xyz"},
        {"window": "5 years"},
        {"segment": ["store"]},
        {"segment": ["a:1", "a:2"]},
    ):
        with pytest.raises(sv.FilterError):
            sv.parse_filters(**{"metric": None, "window": None, "segment": None, **bad})  # type: ignore[arg-type] # a mix of optional fields


def test_a_person_limited_to_segments_lands_on_their_first() -> None:
    assert sv.default_segment(person(Role.VIEWER, ["store:lyon-2", "store:paris-1"])) == (
        ("store", "lyon-2"),
    )
    assert sv.default_segment(person()) is None and sv.default_segment(person(Role.VIEWER, [])) is None


# ---- segments -----------------------------------------------------------------------------------------
def row(value: str, score: float, n: int, low: float, high: float, **extra: Any) -> dict[str, Any]:
    return {
        "segment": {"store": value},
        "score": score,
        "responses": n,
        "ci_low": low,
        "ci_high": high,
        "insufficient": n < 30,
        "positive_pct": extra.pop("pct", score),
        **extra,
    }


@pytest.mark.parametrize(
    ("high", "n", "whole", "marked"),
    [
        (60.0, 100, 70.0, True),  # the whole interval lies below the whole's estimate
        (70.0, 100, 70.0, False),  # touching is not below
        (75.0, 100, 70.0, False),
        (60.0, 20, 70.0, False),  # below the minimum sample: never marked
        (60.0, 100, None, False),  # no whole to compare with (grants)
    ],
)
def test_below_the_whole_means_the_interval_below_its_estimate(
    high: float, n: int, whole: float | None, marked: bool
) -> None:
    reference = None if whole is None else seg.Whole(segment=(), value=whole, responses=5000)
    assert seg.below_whole(ci_high=high, responses=n, whole=reference, min_sample=30) is marked


def test_ces_rows_are_compared_on_their_easy_share() -> None:
    whole = seg.whole_of(Metric.CES, (), {"score": 5.5, "positive_pct": 80.0, "responses": 4000})
    rows = seg.rows_from(
        Metric.CES, [row("a", 4.1, 200, 55.0, 68.0, pct=61.0)], dimension="store", whole=whole, min_sample=30
    )
    assert rows[0].below_whole and rows[0].score == 4.1 and rows[0].compared == 61.0


def test_rows_are_ranked_like_the_scorer_and_limited_to_the_grants() -> None:
    found = [
        row("a", 80.0, 50, 70, 88),
        row("b", 80.0, 90, 71, 87),
        row("c", 40.0, 60, 30, 52),
        {"segment": {}},
    ]
    rows = seg.rows_from(Metric.CSAT, found, dimension="store", whole=None, min_sample=30)
    ranked = seg.rank(rows, sort="score", descending=True, limit=10)
    assert [(r.rank, r.value) for r in ranked] == [(1, "b"), (2, "a"), (3, "c")]  # ties: more answers first
    assert [r.value for r in seg.rank(rows, sort="score", descending=False, limit=2)] == ["c", "b"]
    viewer = person(Role.VIEWER, ["store:a", "store:c,channel:chat"])
    assert [r.value for r in seg.visible(rows, viewer, dimension="store", drilled=False)] == ["a"]


def test_heat_map_cells_carry_a_level_and_respect_the_grants() -> None:
    answer = {
        "rows_by": "store",
        "columns_by": "channel",
        "rows": ["paris-1", "lyon-2"],
        "columns": ["chat", "web"],
        "total_rows": 2,
        "cells": [
            {
                "row": "paris-1",
                "column": "chat",
                "segment": {"store": "paris-1", "channel": "chat"},
                "score": 86.0,
                "responses": 100,
                "insufficient": False,
            },
            {
                "row": "paris-1",
                "column": "web",
                "segment": {"store": "paris-1", "channel": "web"},
                "score": 40.0,
                "responses": 9,
                "insufficient": True,
            },
            {
                "row": "lyon-2",
                "column": "web",
                "segment": {"store": "lyon-2", "channel": "web"},
                "score": 45.0,
                "responses": 50,
                "insufficient": False,
            },
        ],
    }
    grid = seg.heatmap(Metric.CSAT, answer, person())
    assert [r.value for r in grid.rows] == ["paris-1", "lyon-2"] and grid.columns == ("chat", "web")
    assert [c.level for c in grid.rows[0].cells] == ["heat-5", "heat-few"]
    assert [c.level for c in grid.rows[1].cells] == ["heat-none", "heat-1"]
    mine = seg.heatmap(Metric.CSAT, answer, person(Role.VIEWER, ["store:paris-1"]))
    assert [r.value for r in mine.rows] == ["paris-1"] and mine.total_rows == 1
    assert seg.level(Metric.NPS, 35.0, insufficient=False) == "heat-4"


def test_the_csv_holds_the_rows_shown_unformatted_and_safe() -> None:
    filters = sv.parse_filters(metric="csat", window="30d", segment=None)
    rows = seg.rows_from(
        Metric.CSAT,
        [row("paris-1", 70.0, 1000, 67.1, 72.73, delta=-1.25), row("=HYPERLINK(1)", 12.5, 8, 2.2, 47.1)],
        dimension="store",
        whole=seg.Whole(segment=(), value=76.5, responses=5000),
        min_sample=30,
    )
    ranked = seg.rank(rows, sort="score", descending=True, limit=100)
    text = seg.csv_text(
        seg.csv_rows(ranked, dimension="store", filters=filters, whole=seg.Whole((), 76.5, 5000))
    )
    assert text.startswith("\ufeffrank,dimension,value,") and "\r\n" in text
    lines = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert [
        (r["value"], r["score"], r["responses"], r["ci_high"], r["delta"], r["below_whole"]) for r in lines
    ] == [
        ("paris-1", "70", "1000", "72.73", "-1.25", "true"),
        ("'=HYPERLINK(1)", "12.5", "8", "47.1", "", "false"),  # a formula is written as text
    ]
    assert lines[0]["segment"] == "store:paris-1" and lines[0]["whole_score"] == "76.5"


# ---- live hub -----------------------------------------------------------------------------------------
async def test_a_change_reaches_the_pages_it_lies_within_once() -> None:
    hub = LiveHub(max_streams=10, max_per_session=3)
    paris = hub.subscribe(filters={"store": "paris-1"}, owner=b"s1")
    lyon = hub.subscribe(filters={"store": "lyon-2"}, owner=b"s2")
    everything = hub.subscribe(filters={}, owner=b"s3")
    assert paris and lyon and everything
    assert hub.publish({"store": "paris-1", "channel": "chat"}) == 2  # paris-1 and the whole
    hub.publish({"store": "paris-1"})  # a second change before the page refreshed: still one refresh
    assert (paris.pending, lyon.pending, everything.pending) == (True, False, True)
    assert await paris.wait(0) is True and await paris.wait(0) is False
    assert hub.resync() == 3
    hub.unsubscribe(lyon)
    hub.unsubscribe(lyon)  # twice is harmless
    assert hub.streams == 2


def test_streams_are_capped_per_session_and_per_process() -> None:
    hub = LiveHub(max_streams=3, max_per_session=2)
    a = [hub.subscribe(filters={}, owner=b"a") for _ in range(3)]
    assert a[2] is None
    b = hub.subscribe(filters={}, owner=b"b")
    assert b is not None and hub.subscribe(filters={}, owner=b"c") is None
    hub.unsubscribe(b)
    assert hub.subscribe(filters={}, owner=b"c") is not None


async def test_waiting_without_change_times_out_quietly() -> None:
    sub = LiveHub(max_streams=1, max_per_session=1).subscribe(filters={}, owner=b"x")
    assert sub is not None
    waiter = asyncio.create_task(sub.wait(30))
    await asyncio.sleep(0)
    sub.notify()
    assert await waiter is True
