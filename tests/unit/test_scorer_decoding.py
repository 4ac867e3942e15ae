"""The scorer's lean decode path against the full one: same acceptance, same values, same DLQ reasons."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from services.scorer.decoding import RatingRow, decode_lean, decode_record
from shared.envelope import DecodeError, Envelope, decode
from shared.events import RatingSubmitted

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RATING_TYPE = b"com.csat.rating.submitted.v1"
HEADERS = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"r-1"),
    ("ce_type", RATING_TYPE),
    ("ce_source", b"/collector"),
    ("ce_time", b"2026-11-23T12:00:00.123456Z"),
    ("content-type", b"application/json"),
    ("ce_subject", b"r-1"),
]
FIELDS = (
    "rating_id",
    "metric",
    "scale",
    "score",
    "normalized",
    "sentiment",
    "positive",
    "nps_class",
    "segment",
    "touchpoint",
    "comment",
    "source",
    "survey_id",
    "occurred_at",
    "received_at",
)


@dataclass
class Record:
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=lambda: list(HEADERS))
    key: bytes | None = b"cus-9"
    topic: str = "t"
    partition: int = 0
    offset: int = 0


def body(**changes: Any) -> dict[str, Any]:
    """A valid rating as the collector publishes it, with ``changes`` applied (``...`` drops a field)."""
    rating = normalize(
        RatingIn.model_validate(
            {
                "rating_id": "r-1",
                "metric": "csat",
                "score": 4,
                "customer": {"id": "cus-9", "email": "ana@example.com", "locale": "fr"},
                "segment": {"store": "paris-1", "channel": "chat"},
                "touchpoint": "support_chat",
                "comment": "Waited 40 minutes",
                "account": {"id": "acc-1", "tier": "strategic", "value": 120000.5},
                "consent": {"contact": True},
            }
        ),
        received_at=NOW,
    )
    out: dict[str, Any] = json.loads(rating.model_dump_json())
    for name, value in changes.items():
        if value is ...:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def raw(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def full(record: Record) -> Envelope | str:
    """What the consumer did before the lean path: ``shared.envelope.decode``, or its reason."""
    try:
        return decode(headers=record.headers, key=record.key, value=record.value)
    except DecodeError as exc:
        return str(exc)


def assert_same_rating(lean: RatingRow, model: RatingSubmitted) -> None:
    for name in FIELDS:
        assert getattr(lean, name) == getattr(model, name), name
    assert (lean.customer.id, lean.customer.email, lean.customer.phone, lean.customer.locale) == (
        model.customer.id,
        model.customer.email,
        model.customer.phone,
        model.customer.locale,
    )
    assert lean.customer.timezone == model.customer.timezone
    assert (lean.consent.contact, lean.consent.review) == (model.consent.contact, model.consent.review)
    if model.account is None:
        assert lean.account is None
    else:
        assert lean.account is not None
        assert (lean.account.id, lean.account.tier, lean.account.value) == (
            model.account.id,
            model.account.tier,
            model.account.value,
        )


def assert_same_envelope(lean: Envelope, old: Envelope) -> None:
    assert (lean.id, lean.type, lean.source, lean.time, lean.subject, lean.key, lean.extensions) == (
        old.id,
        old.type,
        old.source,
        old.time,
        old.subject,
        old.key,
        old.extensions,
    )
    assert isinstance(lean.data, RatingRow)
    assert isinstance(old.data, RatingSubmitted)
    assert_same_rating(lean.data, old.data)


def check_parity(record: Record) -> Envelope | None:
    """The consumer's answer with the lean path equals the old one; returns the lean envelope if any."""
    old = full(record)
    lean = decode_lean(record)
    new = decode_record(record)
    if lean is not None:
        assert isinstance(old, Envelope), f"lean path accepted what the full path refuses: {old}"
        assert new == lean
        assert_same_envelope(lean, old)
    elif isinstance(old, str):
        assert new == old  # the DLQ reason, word for word
    else:
        assert isinstance(new, Envelope)
        assert new.data == old.data
        assert (new.id, new.time, new.extensions, new.key) == (old.id, old.time, old.extensions, old.key)
    return lean


def test_collector_records_take_the_lean_path() -> None:
    rating = normalize(
        RatingIn.model_validate(
            {"metric": "nps", "scale": "0-10", "score": 9, "customer": {"id": "cus-9"}, "rating_id": "r-2"}
        ),
        received_at=NOW,
    )
    rec = to_record(rating, topic="t")
    record = Record(value=rec.value, headers=rec.headers, key=rec.key)
    lean = check_parity(record)
    assert lean is not None
    assert lean.data.nps_class is not None and lean.data.nps_class.value == "promoter"
    assert lean.key == "cus-9"


def test_every_field_and_extension_attributes_match() -> None:
    record = Record(
        value=raw(body()),
        headers=[*HEADERS, ("ce_traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    )
    lean = check_parity(record)
    assert lean is not None
    assert lean.extensions == {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(body(score="4"), id="score-as-string"),
        pytest.param(body(score=4.0), id="score-as-float"),
        pytest.param(body(positive="true"), id="bool-as-string"),
        pytest.param(body(normalized="0.75"), id="float-as-string"),
        pytest.param(body(occurred_at=1_763_899_200), id="time-as-unix-seconds"),
        pytest.param(body(occurred_at="2026-11-23T06:30Z"), id="time-without-seconds"),
        pytest.param(body(occurred_at="2026-11-23T06:30:22.1234567Z"), id="time-with-7-fraction-digits"),
        pytest.param(
            body(occurred_at="2026-11-23T06:30:22.9999996+01:00"), id="fraction-that-would-round-up"
        ),
        pytest.param(body(consent={"contact": "yes"}), id="consent-as-string"),
        pytest.param(body(account={"value": "12"}), id="account-value-as-string"),
    ],
)
def test_lax_values_the_full_path_coerces_take_it_with_its_values(payload: dict[str, Any]) -> None:
    record = Record(value=raw(payload))
    assert decode_lean(record) is None
    out = decode_record(record)
    assert isinstance(out, Envelope) and isinstance(out.data, RatingSubmitted)
    check_parity(record)


def test_a_unicode_escape_takes_the_full_path_with_the_same_value() -> None:
    record = Record(value=raw(body()).replace(b'"support_chat"', b'"support\\u005fchat"'))
    assert decode_lean(record) is None
    out = decode_record(record)
    assert isinstance(out, Envelope) and out.data.touchpoint == "support_chat"


@pytest.mark.parametrize(
    ("record", "reason_start"),
    [
        pytest.param(Record(value=b"garbage"), "event data is not a JSON object", id="not-json"),
        pytest.param(Record(value=b"[1, 2]"), "event data is not a JSON object", id="json-array"),
        pytest.param(Record(value=None), "event data is not a JSON object", id="no-value"),
        pytest.param(Record(value=raw(body(score=None))), "invalid com.csat", id="null-score"),
        pytest.param(Record(value=raw(body(metric="CSAT"))), "invalid com.csat", id="unknown-metric"),
        pytest.param(Record(value=raw(body(normalized=1.5))), "invalid com.csat", id="out-of-bounds"),
        pytest.param(Record(value=raw(body(customer={"id": ""}))), "invalid com.csat", id="empty-customer"),
        pytest.param(Record(value=raw(body(customer={"id": "x" * 201}))), "invalid com.csat", id="long-id"),
        pytest.param(Record(value=raw(body(segment={"store": 1}))), "invalid com.csat", id="segment-int"),
        pytest.param(Record(value=raw(body(rating_id=...))), "invalid com.csat", id="missing-field"),
        pytest.param(
            Record(value=raw(body(occurred_at="2026-11-23T06:30:22"))), "invalid com.csat", id="naive"
        ),
        pytest.param(
            Record(value=raw(body(occurred_at="2026-02-29T00:00:00Z"))), "invalid com.csat", id="feb-29"
        ),
        pytest.param(Record(value=raw(body(nps_class="fan"))), "invalid com.csat", id="nps-class"),
        pytest.param(
            Record(value=raw(body()) + b" x"), "event data is not a JSON object", id="trailing-data"
        ),
        pytest.param(
            Record(value=raw(body()).replace(b'"r-1"', b'"r-\\ud800"')),
            "event data is not a JSON object",
            id="lone-surrogate",
        ),
        pytest.param(Record(value=raw(body()), headers=[]), "missing ce_type", id="no-headers"),
        pytest.param(
            Record(value=raw(body()), headers=[(k, b"x" if k == "ce_type" else v) for k, v in HEADERS]),
            "unknown event type",
            id="unknown-type",
        ),
        pytest.param(
            Record(
                value=raw(body()), headers=[(k, b"yesterday" if k == "ce_time" else v) for k, v in HEADERS]
            ),
            "invalid CloudEvent",
            id="bad-time",
        ),
        pytest.param(
            Record(value=raw(body()), headers=[(k, b"\xff" if k == "ce_source" else v) for k, v in HEADERS]),
            "invalid CloudEvent",
            id="source-not-utf8",
        ),
    ],
)
def test_poison_gets_the_old_reason_word_for_word(record: Record, reason_start: str) -> None:
    old = full(record)
    assert isinstance(old, str) and old.startswith(reason_start)
    assert decode_lean(record) is None
    assert decode_record(record) == old


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(k, b"0.3" if k == "ce_specversion" else v) for k, v in HEADERS], id="specversion-0.3"),
        pytest.param(
            [(k, b"text/json" if k == "content-type" else v) for k, v in HEADERS], id="content-type"
        ),
        pytest.param([h for h in HEADERS if h[0] != "content-type"], id="no-content-type"),
        pytest.param(
            [(k, b"2026-11-23T12:00:00" if k == "ce_time" else v) for k, v in HEADERS], id="naive-time"
        ),
        pytest.param([h for h in HEADERS if h[0] not in ("ce_time", "ce_subject")], id="no-time-no-subject"),
        pytest.param([*HEADERS, ("ce_partitionkey", b"p")], id="partition-key"),
        pytest.param([(k, b"" if k == "ce_source" else v) for k, v in HEADERS], id="empty-source"),
    ],
)
def test_unusual_headers_get_the_old_answer(headers: list[tuple[str, bytes]]) -> None:
    check_parity(Record(value=raw(body()), headers=headers))


def test_no_key() -> None:
    lean = check_parity(Record(value=raw(body()), key=None))
    assert lean is not None and lean.key is None


# Values of every JSON type, and strings that look like the fields' types, for any field.
_STRINGS = st.sampled_from(
    [
        "",
        "4",
        "true",
        "csat",
        "nps",
        "positive",
        "promoter",
        "1-5",
        "0.5",
        "x" * 201,
        "2026-11-23T06:30:22Z",
        "2026-11-23t06:30:22z",
        "2026-11-23 06:30:22+01:00",
        "2026-11-23_06:30:22Z",
        "2026-11-23T06:30:22.1234567Z",
        "2026-11-23T06:30:22.123+0130",
        "2026-11-23T06:30:22+01",
        "2026-11-23T24:00:00Z",
        "2026-11-23",
        "1763899200",
    ]
) | st.text(max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _STRINGS
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_STRINGS, inner, max_size=3),
    max_leaves=6,
)
_NESTED = {
    "customer": st.fixed_dictionaries({"id": _VALUES}, optional={"email": _VALUES, "locale": _VALUES}),
    "account": st.none()
    | st.fixed_dictionaries({}, optional={"id": _VALUES, "tier": _VALUES, "value": _VALUES}),
    "consent": st.fixed_dictionaries({}, optional={"contact": _VALUES, "review": _VALUES}),
    "segment": st.dictionaries(st.text(max_size=5), _SCALARS, max_size=3),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(
        st.sampled_from([*FIELDS, "customer", "account", "consent", "extra"]),
        _VALUES | st.just(...),
        max_size=3,
    ),
    nested=st.dictionaries(st.sampled_from(sorted(_NESTED)), st.just(None), max_size=2),
    data=st.data(),
)
def test_any_mutation_lean_accepts_is_accepted_by_the_full_path_with_the_same_values(
    changes: dict[str, Any], nested: dict[str, None], data: st.DataObject
) -> None:
    payload = body(**changes)
    for name in nested:
        payload[name] = data.draw(_NESTED[name])
    check_parity(Record(value=raw(payload)))
