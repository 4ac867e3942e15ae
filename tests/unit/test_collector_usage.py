"""Usage observations: what is accepted, what is refused at which field, ids that count retries once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from services.collector.usage import (
    MAX_SIGNALS,
    UsageIn,
    UsageRejected,
    derived_observation_id,
    field_errors,
    observe,
    usage_fingerprint,
)
from shared import events as ev

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "account_id": "acc_77",
        "observed_at": "2026-11-23T00:00:00Z",
        "signals": {"logins_7d": 42, "features_used": 7.0, "data_volume_gb": 1.5},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"account_id": None, "customer_id": "cus_1"},
        {"customer_id": "cus_1"},  # a contact of an account
        {"observation_id": "mixpanel:2026-11-23/acc_77"},
        {"signals": {"tickets_open": 0, "delta_mrr": -120.5}},
        {"signals": {f"s{i}": i for i in range(MAX_SIGNALS)}},
        {"signals": {"x" * 64: 1e12}},
        {"observed_at": "2026-11-23T09:30:00+01:00"},
    ],
)
def test_accepted(overrides: dict[str, Any]) -> None:
    usage = UsageIn.model_validate(body(**overrides))
    event = observe(usage, received_at=NOW, source="src_1")
    assert event.observed_at.tzinfo is UTC
    assert event.signals == {k: float(v) for k, v in usage.signals.items()}
    assert event.source == "src_1"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"account_id": None}, "customer_id", "give customer_id, account_id or both"),
        ({"signals": {}}, "signals", "at least 1 item"),
        ({"signals": {f"s{i}": i for i in range(MAX_SIGNALS + 1)}}, "signals", "at most 50 items"),
        ({"signals": {"Logins": 1}}, "signals.Logins", "should match pattern"),
        ({"signals": {"7d_logins": 1}}, "signals.7d_logins", "should match pattern"),
        ({"signals": {"x" * 65: 1}}, "signals." + "x" * 65, "should match pattern"),
        ({"signals": {"logins_7d": True}}, "signals.logins_7d", "valid number"),
        ({"signals": {"logins_7d": "42"}}, "signals.logins_7d", "valid number"),
        ({"signals": {"logins_7d": None}}, "signals.logins_7d", "valid number"),
        ({"signals": {"logins_7d": float("nan")}}, "signals.logins_7d", "finite number"),
        ({"signals": {"logins_7d": float("inf")}}, "signals.logins_7d", "finite number"),
        ({"signals": {"logins_7d": 2e12}}, "signals.logins_7d", "less than or equal"),
        ({"observed_at": "2026-11-23T00:00:00"}, "observed_at", "timezone"),
        ({"observed_at": 1700000000}, "observed_at", "RFC 3339"),
        ({"observed_at": None}, "observed_at", "required"),
        ({"observation_id": "has space"}, "observation_id", "should match pattern"),
        ({"customer_id": ""}, "customer_id", "at least 1 character"),
        ({"plan": "gold"}, "plan", "Extra inputs"),
    ],
)
def test_refused_at_the_field(overrides: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        UsageIn.model_validate(body(**overrides))
    (first, *_) = field_errors(caught.value)
    assert first.field == field
    assert message in first.message


def test_a_json_nan_is_refused_too() -> None:
    text = '{"account_id": "a", "observed_at": "2026-11-23T00:00:00Z", "signals": {"logins_7d": NaN}}'
    with pytest.raises(ValidationError) as caught:
        UsageIn.model_validate_json(text)
    assert [e.field for e in field_errors(caught.value)] == ["signals.logins_7d"]


def test_an_observation_in_the_future_is_refused() -> None:
    usage = UsageIn.model_validate(body(observed_at=(NOW + timedelta(minutes=6)).isoformat()))
    with pytest.raises(UsageRejected) as caught:
        observe(usage, received_at=NOW)
    assert caught.value.field == "observed_at"
    ok = UsageIn.model_validate(body(observed_at=(NOW + timedelta(minutes=4)).isoformat()))
    assert observe(ok, received_at=NOW).observed_at == NOW + timedelta(minutes=4)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (body(), body(), True),
        (body(), body(observed_at="2026-11-23T01:00:00+01:00"), True),  # the same instant
        (body(), body(signals={"data_volume_gb": 1.5, "features_used": 7, "logins_7d": 42.0}), True),
        (body(), body(signals={"logins_7d": 43, "features_used": 7.0, "data_volume_gb": 1.5}), False),
        (body(), body(customer_id="cus_1"), False),
        (body(), body(observed_at="2026-11-24T00:00:00Z"), False),
    ],
)
def test_derived_ids_and_fingerprints_follow_the_content(
    a: dict[str, Any], b: dict[str, Any], same: bool
) -> None:
    ua, ub = UsageIn.model_validate(a), UsageIn.model_validate(b)
    assert (derived_observation_id(ua) == derived_observation_id(ub)) is same
    assert (usage_fingerprint(ua) == usage_fingerprint(ub)) is same


@pytest.mark.parametrize(
    ("client_id", "header_id", "expected"),
    [("c-1", "h-1", "c-1"), (None, "h-1", "h-1"), (None, None, "derived")],
)
def test_the_id_comes_from_the_body_then_the_header_then_the_content(
    client_id: str | None, header_id: str | None, expected: str
) -> None:
    usage = UsageIn.model_validate(body(observation_id=client_id))
    event = observe(usage, received_at=NOW, observation_id=header_id)
    assert event.observation_id == (derived_observation_id(usage) if expected == "derived" else expected)


def test_the_event_validates_against_its_published_schema() -> None:
    event = observe(UsageIn.model_validate(body(customer_id="cus_1")), received_at=NOW)
    schema = json.loads((CONTRACTS / "schemas" / f"{ev.USAGE_OBSERVED}.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    payload = json.loads(event.model_dump_json())
    assert list(validator.iter_errors(payload)) == []
    assert list(validator.iter_errors({**payload, "signals": {"logins_7d": "many"}}))
    assert ev.EVENT_MODELS[ev.USAGE_OBSERVED].model_validate(payload) == event
