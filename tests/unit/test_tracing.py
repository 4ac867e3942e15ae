"""W3C traceparent parsing and propagation through CloudEvents records (pure, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import structlog

from shared import tracing
from shared.envelope import decode, encode
from shared.events import ActionDecided

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID, ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")),
        (VALID.upper(), ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")),
        (VALID.encode(), ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")),
        # a future version may append fields: keep the ones we know
        (
            VALID.replace("00-", "01-", 1) + "-extra",
            ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01"),
        ),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),  # all-zero trace id
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),  # all-zero span id
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),  # forbidden version
        (VALID + "-extra", None),  # version 00 has exactly four fields
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),  # short trace id
        ("garbage", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_follows_the_w3c_rules(
    value: str | bytes | None, expected: tuple[str, str, str] | None
) -> None:
    ctx = tracing.parse(value)
    assert (None if ctx is None else (ctx.trace_id, ctx.span_id, ctx.flags)) == expected


def test_continuing_keeps_the_trace_and_makes_a_new_span() -> None:
    ctx = tracing.continue_from(VALID)
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.span_id != "00f067aa0ba902b7" and len(ctx.span_id) == 16
    assert tracing.parse(ctx.traceparent) == ctx


def test_an_invalid_parent_starts_a_new_sampled_trace() -> None:
    a, b = tracing.continue_from("nonsense"), tracing.continue_from(None)
    assert a.trace_id != b.trace_id and a.flags == "01"
    assert tracing.parse(a.traceparent) == a


def _record(extensions: dict[str, str] | None = None) -> tuple[list[tuple[str, bytes]], bytes | None, bytes]:
    data = ActionDecided(
        decision_id="d-1",
        rule_id="r",
        action="thank_you",
        rating_id="x",
        customer_id="c",
        decided_at=datetime.now(UTC),
    )
    rec = encode(
        topic="t",
        event_type="com.csat.action.decided.v1",
        source="/test",
        event_id="e-1",
        data=data,
        key="c",
        extensions=extensions,
    )
    return rec.headers, rec.key, rec.value


def test_records_encoded_inside_a_span_carry_ce_traceparent() -> None:
    headers, _, _ = _record()
    assert "ce_traceparent" not in dict(headers)
    ctx = tracing.continue_from(VALID)
    with tracing.span(ctx):
        headers, key, value = _record()
    assert dict(headers)["ce_traceparent"] == ctx.traceparent.encode()
    assert decode(headers=headers, key=key, value=value).extensions["traceparent"] == ctx.traceparent
    assert tracing.current() is None


def test_an_explicit_traceparent_wins_over_the_current_span() -> None:
    with tracing.span(tracing.new_trace()):
        headers, _, _ = _record(extensions={"traceparent": VALID})
    assert dict(headers)["ce_traceparent"] == VALID.encode()


def test_follow_continues_each_events_trace_within_a_batch_and_resets_after() -> None:
    first, second = object(), object()
    other = "00-11111111111111111111111111111111-2222222222222222-00"
    with tracing.batch({id(first): {"traceparent": VALID}, id(second): {"traceparent": other}}):
        a = tracing.follow(first)
        assert structlog.contextvars.get_contextvars()["trace_id"] == a.trace_id
        b = tracing.follow(second)
        assert tracing.current() == b
        unknown = tracing.follow(object())
    assert (a.trace_id, b.trace_id, b.flags) == ("4bf92f3577b34da6a3ce929d0e0e4736", "1" * 32, "00")
    assert unknown.trace_id not in (a.trace_id, b.trace_id)
    assert tracing.current() is None
    assert "trace_id" not in structlog.contextvars.get_contextvars()
