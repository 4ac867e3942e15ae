"""Every scale: range, direction, positives, sentiment and labels."""

from __future__ import annotations

import pytest

from shared.scales import Metric, ScaleError, Sentiment, get_scale, nps_class, parse_score


@pytest.mark.parametrize(
    ("metric", "scale", "score", "positive", "sentiment"),
    [
        (Metric.CSAT, "1-5", 5, True, Sentiment.POSITIVE),
        (Metric.CSAT, "1-5", 4, True, Sentiment.POSITIVE),
        (Metric.CSAT, "1-5", 3, False, Sentiment.NEUTRAL),
        (Metric.CSAT, "1-5", 2, False, Sentiment.NEGATIVE),
        (Metric.CSAT, "1-5", 1, False, Sentiment.NEGATIVE),
        (Metric.CSAT, "1-3", 3, True, Sentiment.POSITIVE),
        (Metric.CSAT, "1-3", 2, False, Sentiment.NEUTRAL),
        (Metric.CSAT, "1-3", 1, False, Sentiment.NEGATIVE),
        (Metric.CSAT, "1-10", 7, True, Sentiment.POSITIVE),
        (Metric.CSAT, "1-10", 6, False, Sentiment.NEUTRAL),
        (Metric.CSAT, "1-10", 4, False, Sentiment.NEGATIVE),
        (Metric.CSAT, "yes-no", 1, True, Sentiment.POSITIVE),
        (Metric.CSAT, "yes-no", 0, False, Sentiment.NEGATIVE),
        (Metric.NPS, "0-10", 9, True, Sentiment.POSITIVE),
        (Metric.NPS, "0-10", 8, False, Sentiment.NEUTRAL),
        (Metric.NPS, "0-10", 6, False, Sentiment.NEGATIVE),
        (Metric.CES, "1-7", 5, True, Sentiment.POSITIVE),
        (Metric.CES, "1-7", 4, False, Sentiment.NEUTRAL),
        (Metric.CES, "1-7", 3, False, Sentiment.NEGATIVE),
        (Metric.CES, "1-5", 1, True, Sentiment.POSITIVE),  # effort variant: lower is easier
        (Metric.CES, "1-5", 5, False, Sentiment.NEGATIVE),
    ],
)
def test_classification(metric: Metric, scale: str, score: int, positive: bool, sentiment: Sentiment) -> None:
    s = get_scale(metric, scale)
    assert s.is_positive(score) is positive
    assert s.sentiment(score) is sentiment


@pytest.mark.parametrize(
    ("metric", "scale", "score", "normalized"),
    [
        (Metric.CSAT, "1-5", 1, 0.0),
        (Metric.CSAT, "1-5", 5, 1.0),
        (Metric.CSAT, "1-5", 3, 0.5),
        (Metric.NPS, "0-10", 10, 1.0),
        (Metric.CES, "1-5", 1, 1.0),
        (Metric.CES, "1-5", 5, 0.0),
        (Metric.CES, "1-7", 7, 1.0),
    ],
)
def test_normalized_is_one_for_the_best_answer(
    metric: Metric, scale: str, score: int, normalized: float
) -> None:
    assert get_scale(metric, scale).normalized(score) == normalized


@pytest.mark.parametrize(
    ("score", "cls"),
    [(10, "promoter"), (9, "promoter"), (8, "passive"), (7, "passive"), (6, "detractor"), (0, "detractor")],
)
def test_nps_classes(score: int, cls: str) -> None:
    assert nps_class(score).value == cls


@pytest.mark.parametrize(
    ("metric", "scale", "raw", "expected"),
    [
        (Metric.CSAT, "1-5", "very satisfied", 5),
        (Metric.CSAT, "1-5", "Satisfied", 4),
        (Metric.CSAT, "1-5", "très insatisfait", 1),
        (Metric.CSAT, "1-5", "3", 3),
        (Metric.CSAT, "1-5", 4.0, 4),
        (Metric.CSAT, "1-3", "\U0001f610", 2),
        (Metric.CSAT, "1-3", "happy", 3),
        (Metric.CSAT, "yes-no", "yes", 1),
        (Metric.CSAT, "yes-no", False, 0),
        (Metric.CSAT, "smileys", "sad", 1),
    ],
)
def test_parse_score_labels(metric: Metric, scale: str, raw: object, expected: int) -> None:
    assert parse_score(get_scale(metric, scale), raw) == expected


@pytest.mark.parametrize(
    ("metric", "scale", "raw", "field"),
    [
        (Metric.CSAT, "1-5", 6, "score"),
        (Metric.CSAT, "1-5", 0, "score"),
        (Metric.CSAT, "1-5", 4.5, "score"),
        (Metric.CSAT, "1-5", "great", "score"),
        (Metric.NPS, "0-10", 11, "score"),
        (Metric.NPS, "0-10", -1, "score"),
        (Metric.CES, "1-7", 8, "score"),
        (Metric.CSAT, "0-10", 5, "scale"),
        (Metric.NPS, "1-5", 5, "scale"),
        (Metric.CSAT, "1-100", 5, "scale"),
    ],
)
def test_bad_scores_and_scales_name_their_field(metric: Metric, scale: str, raw: object, field: str) -> None:
    with pytest.raises(ScaleError) as err:
        parse_score(get_scale(metric, scale), raw)
    assert err.value.field == field


def test_default_scales() -> None:
    assert get_scale(Metric.CSAT, None).name == "1-5"
    assert get_scale(Metric.NPS, None).name == "0-10"
    assert get_scale(Metric.CES, None).name == "1-7"
