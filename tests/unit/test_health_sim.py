"""The health simulation's yardsticks (ROC AUC, precision in the top 10 %) and its generator's promises."""

from __future__ import annotations

import pytest

from bench.health_sim import CUT_OFF, World, generate, precision_at, roc_auc


@pytest.mark.parametrize(
    ("risk", "churned", "auc"),
    [
        ([4, 3, 2, 1], [True, True, False, False], 1.0),  # every churner ranked riskier
        ([1, 2, 3, 4], [True, True, False, False], 0.0),
        ([1, 1, 1, 1], [True, False, True, False], 0.5),  # all tied: a coin
        ([3, 2, 2, 1], [True, True, False, False], 0.875),  # a churner tied with a stayer counts half
        ([0.9, 0.8, 0.7, 0.6, 0.5], [True, False, True, False, False], 5 / 6),
    ],
)
def test_roc_auc(risk: list[float], churned: list[bool], auc: float) -> None:
    assert roc_auc(risk, churned) == pytest.approx(auc)


@pytest.mark.parametrize(
    ("risk", "churned", "precision"),
    [
        (list(range(20, 0, -1)), [True, False] + [False] * 18, 0.5),  # top 2 of 20: one churner
        (list(range(20, 0, -1)), [True, True] + [False] * 18, 1.0),
        ([5] * 4 + [1] * 16, [True, False, False, False] + [False] * 16, 0.25),  # 4 tied at the cut: pro rata
        ([9] + [5] * 4 + [1] * 15, [False, True, True, False, False] + [False] * 15, 0.25),
    ],
)
def test_precision_in_the_top_10_percent(risk: list[float], churned: list[bool], precision: float) -> None:
    assert precision_at(risk, churned) == pytest.approx(precision)


def test_the_generator_is_deterministic_and_emits_only_the_past() -> None:
    first, again = generate(7, 150, World()), generate(7, 150, World())
    assert [(a.account_id, a.churned, a.evidence) for a in first] == [
        (a.account_id, a.churned, a.evidence) for a in again
    ]
    for a in first:
        assert all(r.occurred_at <= CUT_OFF for r in a.evidence.ratings)
        assert all(o.observed_at <= CUT_OFF for o in a.evidence.observations)


def test_the_generators_churn_is_calibrated() -> None:
    accounts = generate(11, 3000, World())
    churn = sum(a.churned for a in accounts) / len(accounts)
    mean_probability = sum(a.churn_probability for a in accounts) / len(accounts)
    assert mean_probability == pytest.approx(0.12, abs=0.002)
    assert churn == pytest.approx(0.12, abs=0.02)
