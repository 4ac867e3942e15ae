"""CloudEvents binary mode: headers, key, round trip, and clear reasons for bad records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from shared.envelope import DecodeError, decode
from shared.events import RatingSubmitted

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def _rating() -> RatingSubmitted:
    return normalize(
        RatingIn.model_validate(
            {"metric": "csat", "score": 4, "customer": {"id": "cus-9"}, "rating_id": "r-1"}
        ),
        received_at=NOW,
    )


def test_binary_mode_headers_and_key() -> None:
    rec = to_record(_rating(), topic="t")
    headers = dict(rec.headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_id"] == b"r-1"
    assert headers["ce_type"] == b"com.csat.rating.submitted.v1"
    assert headers["ce_source"] == b"/collector"
    assert headers["content-type"] == b"application/json"
    assert rec.key == b"cus-9"


def test_round_trip() -> None:
    rec = to_record(_rating(), topic="t")
    env = decode(headers=rec.headers, key=rec.key, value=rec.value)
    assert isinstance(env.data, RatingSubmitted)
    assert env.data == _rating()
    assert env.key == "cus-9"


@pytest.mark.parametrize(
    ("headers", "value", "reason"),
    [
        ([], b"{}", "missing ce_type"),
        (
            [("ce_type", b"x"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_specversion", b"1.0")],
            b"{}",
            "unknown event type",
        ),
        (
            [
                ("ce_type", b"com.csat.rating.submitted.v1"),
                ("ce_id", b"1"),
                ("ce_source", b"/s"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
            b"not json",
            "not a JSON object",
        ),
        (
            [
                ("ce_type", b"com.csat.rating.submitted.v1"),
                ("ce_id", b"1"),
                ("ce_source", b"/s"),
                ("ce_specversion", b"1.0"),
                ("content-type", b"application/json"),
            ],
            b'{"rating_id": "x"}',
            "invalid com.csat.rating.submitted.v1 data",
        ),
        (
            [("ce_type", b"com.csat.rating.submitted.v1"), ("ce_specversion", b"1.0")],
            b"{}",
            "invalid CloudEvent",
        ),
    ],
)
def test_bad_records_have_reasons(headers: list[tuple[str, bytes]], value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode(headers=headers, key=None, value=value)
