"""Interactions in: validation with the field at fault, normalisation into the event, fingerprints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from services.collector.interactions import (
    InteractionIn,
    InteractionRejected,
    fingerprint,
    normalize_interaction,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def interaction(**kw: Any) -> dict[str, Any]:
    return {"type": "order.delivered", "customer": {"id": "cus_1"}, **kw}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"customer": {"id": "c"}}, "type", "Field required"),
        (interaction(type="Order Delivered"), "type", "dotted lower-case name"),
        (interaction(type="order..delivered"), "type", "dotted lower-case name"),
        (interaction(type="a.b.c.d.e"), "type", "at most 4 parts"),
        (interaction(type=7), "type", "string"),
        (interaction(customer={"id": ""}), "customer.id", "at least 1 character"),
        (interaction(customer={"id": "c", "email": "not-an-email"}), "customer.email", "email"),
        (interaction(customer={"id": "c", "phone": "0612345678"}), "customer.phone", "pattern"),
        (interaction(occurred_at=1763888400), "occurred_at", "RFC 3339"),
        (interaction(occurred_at="2026-11-23T09:30:00"), "occurred_at", "timezone"),
        (interaction(attributes={"Agent": "x"}), "attributes", "lower-case"),
        (interaction(attributes={"tags": ["a", "b"]}), "attributes.tags", "valid string"),
        (interaction(attributes={"note": "x" * 501}), "attributes", "longer than 500"),
        (interaction(attributes={f"a{i}": i for i in range(31)}), "attributes", "at most 30"),
        (interaction(segment={"Store": "p1"}), "segment", "lower-case"),
        (interaction(segment={"store": ""}), "segment.store", "at least 1 character"),
        (interaction(consent={"review": True}), "consent.contact", "Field required"),
        (interaction(interaction_id="has space"), "interaction_id", "pattern"),
        (interaction(unknown=1), "unknown", "Extra inputs"),
    ],
)
def test_invalid_interactions_name_the_field(body: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        InteractionIn.model_validate(body)
    errors = caught.value.errors()
    where = {".".join(str(p) for p in e["loc"]) for e in errors}
    assert any(w == field or w.startswith(field + ".") for w in where), where
    assert any(message in e["msg"] for e in errors), [e["msg"] for e in errors]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            interaction(type=" Ticket.Solved ", attributes={"agent_replied": True, "group": " Billing "}),
            {"type": "ticket.solved", "attributes": {"agent_replied": True, "group": "Billing"}},
        ),
        (
            interaction(occurred_at="2026-11-23T11:30:00+02:00", segment={"store": " paris-1 "}),
            {"occurred_at": datetime(2026, 11, 23, 9, 30, tzinfo=UTC), "segment": {"store": "paris-1"}},
        ),
        (interaction(), {"occurred_at": NOW, "consent": None, "account": None}),
        (
            interaction(consent={"contact": False}, account={"tier": "Gold", "value": 10}),
            {
                "consent": {"contact": False, "review": False},
                "account": {"id": None, "tier": "gold", "value": 10},
            },
        ),
        (
            interaction(attributes={"items": 3, "total": 42.5, "carrier": None}),
            {"attributes": {"items": 3, "total": 42.5, "carrier": None}},
        ),
    ],
)
def test_normalisation_into_the_event(body: dict[str, Any], expected: dict[str, Any]) -> None:
    event = normalize_interaction(InteractionIn.model_validate(body), received_at=NOW, source="shop")
    dumped = event.model_dump()
    for key, value in expected.items():
        assert dumped[key] == value, key
    assert event.source == "shop" and event.received_at == NOW and event.customer.id == "cus_1"


def test_the_id_is_the_clients_then_the_key_then_random() -> None:
    keyed = InteractionIn.model_validate(interaction(interaction_id="ord-1:delivered"))
    assert (
        normalize_interaction(keyed, received_at=NOW, interaction_id="hdr").interaction_id
        == "ord-1:delivered"
    )
    plain = InteractionIn.model_validate(interaction())
    assert normalize_interaction(plain, received_at=NOW, interaction_id="hdr").interaction_id == "hdr"
    first = normalize_interaction(plain, received_at=NOW).interaction_id
    assert first != normalize_interaction(plain, received_at=NOW).interaction_id


@pytest.mark.parametrize(("skew", "refused"), [(timedelta(minutes=4), False), (timedelta(minutes=6), True)])
def test_an_interaction_from_the_future_is_refused(skew: timedelta, refused: bool) -> None:
    body = InteractionIn.model_validate(interaction(occurred_at=(NOW + skew).isoformat()))
    if refused:
        with pytest.raises(InteractionRejected) as caught:
            normalize_interaction(body, received_at=NOW)
        assert caught.value.field == "occurred_at"
    else:
        assert normalize_interaction(body, received_at=NOW).occurred_at == NOW + skew


def test_fingerprint_ignores_spelling_and_receive_time_but_not_content() -> None:
    def fp(body: dict[str, Any], received: datetime = NOW) -> bytes:
        parsed = InteractionIn.model_validate(body)
        event = normalize_interaction(parsed, received_at=received, interaction_id="i-1")
        return fingerprint(event, client_occurred_at=parsed.occurred_at)

    base = fp(interaction(attributes={"carrier": "dhl"}))
    assert fp(interaction(type="ORDER.delivered", attributes={"carrier": " dhl "})) == base
    assert fp(interaction(attributes={"carrier": "dhl"}), NOW + timedelta(seconds=3)) == base
    assert fp(interaction(attributes={"carrier": "ups"})) != base
    assert fp(interaction(attributes={"carrier": "dhl"}, occurred_at="2026-11-23T09:00:00Z")) != base
