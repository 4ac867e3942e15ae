"""Interactions in: validation with the field at fault, normalisation into the event, fingerprints."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudevents.core.bindings import kafka as ce_kafka
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.collector.intake import EncodedInteractionSubmission, interaction_record
from services.collector.interactions import (
    InteractionIn,
    InteractionRejected,
    fingerprint,
    normalize_interaction,
    normalize_interaction_encoded,
)
from shared import tracing
from shared.envelope import decode
from shared.events import InteractionRecorded

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
        (interaction(attributes={"order_id": 2**63}), "attributes", "within 64 bits"),
        (interaction(attributes={"order_id": -(2**63) - 1}), "attributes", "within 64 bits"),
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


def test_an_occurred_at_outside_the_calendar_in_utc_is_refused_at_its_field() -> None:
    body = InteractionIn.model_validate(interaction(occurred_at="0001-01-01T00:00:00+01:00"))
    for normalise in (normalize_interaction, normalize_interaction_encoded):
        with pytest.raises(InteractionRejected) as caught:
            normalise(body, received_at=NOW)
        assert caught.value.field == "occurred_at"


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


# --- normalize_interaction_encoded: the hot path writes the event's bytes without building the model ---

_text = st.text(max_size=12)
_word = st.text(min_size=1, max_size=12)
_ATTRIBUTE_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.integers(min_value=-(10**30), max_value=10**30),  # beyond 64 bits: refused at the field
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 1e16, 1e-7, 12000.0, 42.5, 1 / 3]),
    st.text(max_size=20),
    st.sampled_from([" Billing ", 'Très bien — ünïcødé "quoted"', "\u00e9\n\t", "😀 emoji", "a\\b"]),
)
_INTERACTIONS = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["order.delivered", " Ticket.Solved ", "chat.closed", "store.visit"]),
        "customer": st.fixed_dictionaries(
            {"id": st.sampled_from(["c1", " spaced ", "cüs-ü", "客户-7"])},
            optional={
                "email": st.sampled_from(["ana@example.com", "Bo@Example.org"]),
                "phone": st.just("+33612345678"),
                "locale": st.sampled_from(["fr", "en-GB"]),
                "timezone": st.sampled_from(["Europe/Paris", "Amérique/Ü"]),
            },
        ),
    },
    optional={
        "interaction_id": st.sampled_from(["order-5512-delivered", "x.y:z@w/+="]),
        "occurred_at": st.sampled_from(
            [
                "2026-11-23T09:30:00Z",
                "2026-11-23T11:00:00.5+02:00",
                "2026-11-23T10:04:59.999999Z",  # just inside the 5 min skew
                "2026-11-23T10:05:00.000001Z",  # just past it: refused
                "2026-11-23T05:00:00-05:00",
                "0001-01-01T00:00:00Z",
                "0001-01-01T00:30:00+01:00",
                "1970-01-01T00:00:00+00:00",
                "2025-12-31T23:59:59.123456+14:00",
            ]
        ),
        "attributes": st.dictionaries(
            st.sampled_from(["order_id", "carrier", "items", "agent_replied", "total", "note"]),
            _ATTRIBUTE_VALUES,
            max_size=6,
        ),
        "segment": st.dictionaries(st.sampled_from(["store", "channel", "agent"]), _word, max_size=3),
        "account": st.fixed_dictionaries(
            {},
            optional={
                "id": _text,
                "tier": st.sampled_from(["Gold", "strategic", None]),
                "value": st.one_of(
                    st.none(),
                    st.integers(min_value=0, max_value=10**20),
                    st.floats(min_value=0, allow_nan=False, allow_infinity=False),
                ),
            },
        ),
        "consent": st.fixed_dictionaries({"contact": st.booleans()}, optional={"review": st.booleans()}),
    },
)
_RECEIVED = [NOW, NOW.replace(microsecond=123400), NOW + timedelta(microseconds=1)]


def assert_same_as_the_model_path(
    body: dict[str, Any], *, received: datetime, header_id: str | None, source: str | None
) -> None:
    """What the lean writer gives equals what the model path gives: bytes, fingerprint, refusal."""
    try:
        parsed = InteractionIn.model_validate(body)
    except ValidationError:
        return  # refused before normalisation, the same for both paths
    keyed = bool(parsed.interaction_id or header_id)
    args: dict[str, Any] = {"received_at": received, "interaction_id": header_id, "source": source}
    try:
        event = normalize_interaction(parsed, **args)
    except InteractionRejected as exc:
        refused = (exc.field, exc.message)
        with pytest.raises(InteractionRejected) as lean:
            normalize_interaction_encoded(parsed, keyed=keyed, **args)
        assert (lean.value.field, lean.value.message) == refused
        return
    encoded = normalize_interaction_encoded(parsed, keyed=keyed, **args)
    assert encoded is not None
    if header_id is None and parsed.interaction_id is None:
        # A fresh id each call: compare with the model of the same id.
        event = event.model_copy(update={"interaction_id": encoded.interaction_id})
    assert encoded.value == InteractionRecorded.__pydantic_serializer__.to_json(event)
    assert encoded.value == event.model_dump_json().encode()  # what ``shared.envelope.encode`` publishes
    assert (encoded.interaction_id, encoded.customer_id, encoded.received_at) == (
        event.interaction_id,
        event.customer.id,
        event.received_at,
    )
    expected = fingerprint(event, client_occurred_at=parsed.occurred_at) if keyed else None
    assert encoded.fingerprint == expected


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=_INTERACTIONS,
    received=st.sampled_from(_RECEIVED),
    header_id=st.sampled_from([None, "hdr-1"]),
    source=st.sampled_from([None, "shop", "zendesk"]),
)
def test_normalize_interaction_encoded_writes_the_model_paths_bytes_and_fingerprint(
    body: dict[str, Any], received: datetime, header_id: str | None, source: str | None
) -> None:
    assert_same_as_the_model_path(body, received=received, header_id=header_id, source=source)


@pytest.mark.parametrize(
    "body",
    [
        interaction(),
        interaction(
            interaction_id="order-5512-delivered",
            customer={"id": " cüs ", "email": "ana@example.com", "locale": "fr", "timezone": "Europe/Paris"},
            attributes={"note": '  Très bien — ünïcødé "quoted" 😀 \n ', "items": 3, "ok": True, "x": None},
            segment={"store": " paris-1 ", "channel": "Web"},
            account={"id": "acc_77", "tier": "Strategic", "value": 120000},
            consent={"contact": True},
        ),
        interaction(attributes={"big": 2**63 - 1, "small": -(2**63), "zero": -0.0, "tiny": 5e-324}),
        interaction(attributes={"f": 1e16, "g": 1e-7, "h": 123456789.123456789, "third": 1 / 3}),
        interaction(account={"value": 10**20}),
        interaction(occurred_at="2026-11-23T10:05:00Z"),  # exactly the allowed skew
        interaction(occurred_at="2026-11-23T10:05:00.000001Z"),  # just beyond: refused alike
        interaction(occurred_at="0001-01-01T00:00:00Z"),
        interaction(occurred_at="0001-01-01T00:00:00+01:00"),  # before year 1 in UTC: refused alike
        interaction(occurred_at="9999-12-31T23:59:59-01:00"),  # after 9999 in UTC: refused alike
        interaction(occurred_at="2026-11-24T00:59:59.999999+14:00"),
        interaction(occurred_at="2026-11-22T23:00:00-12:00", interaction_id="i-9"),
        interaction(attributes={f"a{i}": "v" * 500 for i in range(30)}),
    ],
)
@pytest.mark.parametrize("header_id", [None, "hdr-1"])
def test_the_lean_path_on_edge_cases(body: dict[str, Any], header_id: str | None) -> None:
    for received in _RECEIVED:
        assert_same_as_the_model_path(body, received=received, header_id=header_id, source="shop")


def test_the_hand_encoded_interaction_record_is_what_the_sdk_encodes() -> None:
    """The lean submission's CloudEvent (headers written by hand) against ``interaction_record`` (the
    CloudEvents SDK, the reference): same topic, key, value and headers, decoded alike."""
    body = interaction(
        interaction_id="ord-1",
        customer={"id": "cüs-1", "email": "ana@example.com"},
        attributes={"note": "Très bien — ünïcødé"},
    )
    parsed = InteractionIn.model_validate(body)
    for received in (NOW, NOW.replace(microsecond=123400)):
        event = normalize_interaction(parsed, received_at=received, source="shop")
        encoded = normalize_interaction_encoded(parsed, received_at=received, source="shop")
        assert encoded is not None
        for traced in (False, True):
            with tracing.span(tracing.continue_from(None)) if traced else contextlib.nullcontext():
                fast = EncodedInteractionSubmission(encoded, "shop").record("t")
                sdk = interaction_record(event, topic="t")
            assert (fast.topic, fast.key, fast.value, fast.headers) == (
                sdk.topic,
                sdk.key,
                sdk.value,
                sdk.headers,
            )
            assert any(h == "ce_traceparent" for h, _ in fast.headers) is traced
            ours = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(dict(fast.headers), fast.key, fast.value))
            theirs = ce_kafka.from_binary_event(ce_kafka.KafkaMessage(dict(sdk.headers), sdk.key, sdk.value))
            assert ours.get_attributes() == theirs.get_attributes()
            assert decode(headers=fast.headers, key=fast.key, value=fast.value).data == event
