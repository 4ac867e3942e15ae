"""Score maths: the worked examples of the CSAT, NPS and CES definitions and the statistics around them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.scorer import domain
from shared.scales import Metric


def test_csat_worked_example_1000_answers() -> None:
    # 300 very satisfied + 400 satisfied + 100 neutral + 200 dissatisfied -> 70 %
    counts = {("1-5", 5): 300, ("1-5", 4): 400, ("1-5", 3): 100, ("1-5", 2): 200}
    s = domain.summarize(Metric.CSAT, counts)
    assert s.score == 70.0
    assert s.responses == 1000
    assert s.positive == 700
    assert s.neutral == 100
    assert s.band == "good"
    assert not s.insufficient


def test_csat_150_of_200_is_75() -> None:
    s = domain.summarize(Metric.CSAT, {("1-5", 5): 150, ("1-5", 1): 50})
    assert s.score == 75.0


def test_csat_mixed_scales_counts_each_scales_positives() -> None:
    counts = {("1-5", 4): 1, ("1-3", 3): 1, ("1-10", 7): 1, ("yes-no", 0): 1}
    assert domain.summarize(Metric.CSAT, counts).score == 75.0


def test_nps() -> None:
    # 50 promoters, 30 passives, 20 detractors -> 30
    s = domain.summarize(Metric.NPS, {("0-10", 10): 50, ("0-10", 8): 30, ("0-10", 3): 20})
    assert s.score == 30.0
    assert (s.promoters, s.passives, s.detractors) == (50, 30, 20)
    assert s.ci_low is not None and s.ci_high is not None
    assert s.ci_low < 30 < s.ci_high


def test_nps_bounds() -> None:
    assert domain.summarize(Metric.NPS, {("0-10", 10): 10}).score == 100.0
    assert domain.summarize(Metric.NPS, {("0-10", 0): 10}).score == -100.0


def test_ces_mean_and_easy_share_with_both_directions() -> None:
    # 1-7 ease: 7 and 5 are easy; 1-5 effort: 1 (least effort) is easy and maps to 7 on the ease scale.
    s = domain.summarize(Metric.CES, {("1-7", 7): 1, ("1-7", 5): 1, ("1-5", 1): 1, ("1-5", 5): 1})
    assert s.positive_pct == 75.0
    assert s.mean == pytest.approx((7 + 5 + 7 + 1) / 4)


def test_insufficient_below_minimum() -> None:
    assert domain.summarize(Metric.CSAT, {("1-5", 5): 29}).insufficient
    assert not domain.summarize(Metric.CSAT, {("1-5", 5): 30}).insufficient
    assert domain.summarize(Metric.CSAT, {("1-5", 5): 5}, min_sample=5).insufficient is False


def test_empty() -> None:
    s = domain.summarize(Metric.CSAT, {})
    assert s.score is None and s.responses == 0 and s.insufficient


@pytest.mark.parametrize(
    ("pos", "n", "low", "high"),
    [(70, 100, 0.6042, 0.7810), (0, 10, 0.0, 0.2775), (10, 10, 0.7225, 1.0), (150, 200, 0.6857, 0.8049)],
)
def test_wilson_interval(pos: int, n: int, low: float, high: float) -> None:
    lo, hi = domain.wilson_interval(pos, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


@pytest.mark.parametrize(
    ("pct", "name"),
    [
        (90, "world-class"),
        (85, "world-class"),
        (80, "excellent"),
        (70, "good"),
        (60, "fair"),
        (49.9, "critical"),
    ],
)
def test_bands(pct: float, name: str) -> None:
    assert domain.band(pct) == name


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("30d", timedelta(days=30)),
        ("2w", timedelta(weeks=2)),
    ],
)
def test_parse_window(text: str, delta: timedelta) -> None:
    assert domain.parse_window(text) == delta


@pytest.mark.parametrize("text", ["", "30", "d30", "0d", "5y", "9999d"])
def test_bad_windows(text: str) -> None:
    with pytest.raises(domain.WindowError):
        domain.parse_window(text)


def test_segment_key_sorts_dimensions() -> None:
    assert domain.segment_key({"store": "a", "channel": "b"}) == "channel=b|store=a"
    assert domain.segment_key({}) == "*"


def test_parse_segment_params() -> None:
    assert domain.parse_segment_params(["store:paris-1", "channel:chat"]) == {
        "store": "paris-1",
        "channel": "chat",
    }
    with pytest.raises(ValueError, match="dimension:value"):
        domain.parse_segment_params(["store"])
