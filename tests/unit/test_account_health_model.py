"""Health model files: every mistake refused with the component and the field; the shipped default loads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from services.actions.health.model import (
    Band,
    Fact,
    HealthModelError,
    load_health_file,
    load_health_text,
    parse_health_model,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "services" / "actions" / "playbooks" / "health.yaml"

VALID: dict[str, Any] = {
    "version": 1,
    "components": [
        {
            "id": "csat",
            "fact": "csat",
            "window": "90d",
            "min_n": 3,
            "direction": "higher_is_better",
            "normalise": {"thresholds": [[40, 0], [70, 50], [90, 100]]},
            "weight": 25,
        },
        {
            "id": "logins",
            "signal": "logins_7d",
            "aggregate": "mean",
            "max_age": "14d",
            "direction": "higher_is_better",
            "normalise": {"thresholds": [[0, 0], [10, 100]]},
            "weight": 15,
            "missing": {"assume": 0},
        },
    ],
}
DROP = object()


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    here: Any = doc
    for part in path[:-1]:
        here = here[part]
    if value is DROP:
        del here[path[-1]]
    else:
        here[path[-1]] = value
    return doc


def test_the_valid_document_is_valid() -> None:
    m = parse_health_model(VALID)
    assert [c.id for c in m.components] == ["csat", "logins"]
    assert (m.bands.healthy, m.bands.at_risk, m.hysteresis) == (70.0, 40.0, 0.0)


@pytest.mark.parametrize(
    ("path", "value", "error"),
    [
        (
            ("components", 0, "fact"),
            "csta",
            "component csat: fact: unknown value 'csta' (did you mean 'csat'?)",
        ),
        (
            ("components", 0, "fact"),
            DROP,
            "component csat: fact: a component reads either a fact or a signal",
        ),
        (
            ("components", 0, "signal"),
            "logins_7d",
            "component csat: fact: a component reads either a fact or a signal",
        ),
        (
            ("components", 0, "window"),
            "ninety days",
            "component csat: window: duration 'ninety days' must look like",
        ),
        (("components", 0, "window"), "0d", "component csat: window: a duration must be positive"),
        (("components", 0, "min_n"), 0, "component csat: min_n: Input should be greater than or equal to 1"),
        (("components", 0, "weight"), 0, "component csat: weight: Input should be greater than 0"),
        (("components", 0, "weight"), float("inf"), "component csat: weight: "),
        (
            ("components", 0, "direction"),
            "up",
            "component csat: direction: unknown value 'up'; one of higher_is_better",
        ),
        (
            ("components", 0, "direction"),
            "higher_is_worse",
            "component csat: normalise.thresholds.1: with direction higher_is_worse the scores must fall",
        ),
        (
            ("components", 0, "normalise"),
            {"thresholds": [[40, 0]]},
            "component csat: normalise.thresholds: at least two",
        ),
        (
            ("components", 0, "normalise"),
            {"thresholds": [[40, 0], [30, 100]]},
            "component csat: normalise.thresholds.1: values must rise",
        ),
        (
            ("components", 0, "normalise"),
            {"thresholds": [[40, 0], [70, 120]]},
            "component csat: normalise.thresholds.1: the score 120 must",
        ),
        (
            ("components", 0, "normalise"),
            {"thresholds": [[40, 0], [170, 100]]},
            "component csat: normalise.thresholds.1: csat lies between 0 and 100; 170 can never be reached",
        ),
        (
            ("components", 0, "normalise"),
            {"thresholds": [[40, 0], ["a", 100]]},
            "component csat: normalise.thresholds.1: a [value, score] pair",
        ),
        (
            ("components", 0, "normalise"),
            {"thresholds": [[40, 0], [True, 100]]},
            "component csat: normalise.thresholds.1: a [value, score] pair",
        ),
        (("components", 0, "normalise"), {}, "component csat: normalise: give either thresholds"),
        (
            ("components", 0, "normalise"),
            {"thresholds": [[0, 0], [1, 100]], "percentile": {}},
            "component csat: normalise: give either thresholds",
        ),
        (
            ("components", 0, "normalise"),
            {"percentile": {"min_base": 1}},
            "component csat: normalise.percentile.min_base: Input should be",
        ),
        (
            ("components", 0, "normalise"),
            {"percentile": {"resolution": 0}},
            "component csat: normalise.percentile.resolution: Input should",
        ),
        (
            ("components", 0, "aggregate"),
            "sum",
            "component csat: aggregate: applies to usage signals, not to csat",
        ),
        (("components", 0, "max_age"), "3d", "component csat: max_age: applies to usage signals"),
        (("components", 0, "metric"), "nps", "component csat: metric: csat already says its metric"),
        (
            ("components", 1, "aggregate"),
            DROP,
            "component logins: aggregate: how contacts' values make the account's",
        ),
        (
            ("components", 1, "aggregate"),
            "median",
            "component logins: aggregate: unknown value 'median' (did you mean 'mean'?)",
        ),
        (
            ("components", 1, "window"),
            "30d",
            "component logins: window: applies to satisfaction facts, not to signals",
        ),
        (("components", 1, "min_n"), 3, "component logins: min_n: applies to satisfaction facts"),
        (("components", 1, "signal"), "Logins", "component logins: signal: String should match pattern"),
        (
            ("components", 1, "missing"),
            "sometimes",
            "component logins: missing: one of skip, worst or {assume: <a number>}",
        ),
        (
            ("components", 1, "missing"),
            {"assume": "x"},
            "component logins: missing.assume: Input should be a valid number",
        ),
        (
            ("components", 1, "missing"),
            {"assume": float("nan")},
            "component logins: missing.assume: assume must be a finite",
        ),
        (
            ("components", 1, "id"),
            "csat",
            "component csat: id: id 'csat' is used twice (components #0 and #1)",
        ),
        (("components", 1, "id"), "Bad Id", "component Bad Id: id: String should match pattern"),
        (
            ("components", 1, "weigth"),
            3,
            "component logins: weigth: unknown field 'weigth' (did you mean 'weight'?)",
        ),
        (
            ("components", 1, "label"),
            {"de": "Anmeldungen"},
            "component logins: label: unknown locale 'de'; use en, fr",
        ),
        (("bands",), {"healthy": 40, "at_risk": 70}, "bands.at_risk: 70 must be below healthy (40)"),
        (("bands",), {"healthy": 140}, "bands.healthy: Input should be less than or equal to 100"),
        (("hysteresis",), 20, "hysteresis: Input should be less than or equal to 10"),
        (("version",), 2, "version: Input should be 1"),
        (("components",), [], "components: a model needs at least one component"),
        (("component",), [], "component: unknown field 'component' (did you mean 'components'?)"),
    ],
)
def test_refused_with_the_component_and_the_field(path: tuple[Any, ...], value: Any, error: str) -> None:
    with pytest.raises(HealthModelError) as caught:
        parse_health_model(changed(path, value), origin="health.yaml")
    lines = [str(e) for e in caught.value.errors]
    assert len(lines) == 1, lines
    assert lines[0].startswith(error), lines[0]
    assert str(caught.value).startswith("health.yaml: ")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("components: [", "file: not valid YAML"),
        ("- a\n- b\n", "file: a mapping with `components:` is expected"),
    ],
)
def test_a_broken_file(text: str, error: str) -> None:
    with pytest.raises(HealthModelError) as caught:
        load_health_text(text, origin="h.yaml")
    assert str(caught.value.errors[0]).startswith(error)


def test_every_component_in_error_is_named_at_once() -> None:
    doc = changed(("components", 0, "weight"), -1)
    doc["components"][1]["aggregate"] = "median"
    with pytest.raises(HealthModelError) as caught:
        parse_health_model(doc)
    assert [(e.component, e.field) for e in caught.value.errors] == [
        ("csat", "weight"),
        ("logins", "aggregate"),
    ]


def test_the_shipped_default_model_loads_and_reads_the_documented_inputs() -> None:
    m = load_health_file(DEFAULT)
    facts = {c.fact for c in m.components if c.fact}
    signals = {c.signal for c in m.components if c.signal}
    assert {Fact.CSAT, Fact.OPEN_ALERTS} <= facts
    assert "logins_7d" in signals
    assert (m.bands.healthy, m.bands.at_risk) == (70.0, 40.0)
    assert m.bands.of(69.9) is Band.AT_RISK
    for c in m.components:
        assert set(c.label) == {"en", "fr"}, c.id
