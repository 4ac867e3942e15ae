"""`csat dlq list|redrive` on the real broker: dead letters are listed and their originals re-driven."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime

import pytest

from services.cli.commands import main as csat
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.topics import Topics
from tests.helpers import produce, read_to_end, read_topic
from tests.infra import Infra

pytestmark = pytest.mark.integration

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _letter(topics: Topics, n: int, kind: str) -> OutgoingRecord:
    original = {"ce_type": "com.example.unknown.v1", "ce_traceparent": TRACE}
    return encode(
        topic=topics.dlq_scorer,
        event_type=ev.DEAD_LETTER,
        source="/scorer",
        event_id=f"scorer:{topics.ratings}:0:{n}",
        data=ev.DeadLetter(
            consumer="scorer",
            reason=f"{kind} reason {n}",
            topic=topics.ratings,
            partition=0,
            offset=n,
            key=f"cus-{n}",
            value_b64=base64.b64encode(f'{{"n": {n}}}'.encode()).decode(),
            headers=original,
            failed_at=datetime.now(UTC),
        ),
        key=f"{topics.ratings}:0",
        extensions={"dlqreason": kind},
    )


def test_list_and_redrive_by_reason(
    infra: Infra, topics: Topics, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    letters = [_letter(topics, 1, "unknown_event_type"), _letter(topics, 2, "invalid_data")]
    asyncio.run(produce(infra.bootstrap, letters))
    monkeypatch.setenv("KAFKA_BOOTSTRAP", infra.bootstrap)
    monkeypatch.setenv("CSAT_TOPIC_PREFIX", topics.prefix)

    assert csat(["dlq", "list", "scorer"]) == 0
    listing = capsys.readouterr().out
    assert "2 of 2 dead letter(s)" in listing and "unknown_event_type reason 1" in listing

    assert csat(["dlq", "redrive", "scorer", "--reason", "unknown_event_type", "--dry-run"]) == 0
    assert "would re-drive 1 record(s)" in capsys.readouterr().out
    assert asyncio.run(read_to_end(infra.bootstrap, topics.ratings)) == []  # the CLI returned: nothing sent

    assert csat(["dlq", "redrive", "scorer", "--reason", "unknown_event_type"]) == 0
    assert "re-drove 1 record(s)" in capsys.readouterr().out
    (back,) = asyncio.run(read_topic(infra.bootstrap, topics.ratings, count=1))
    assert (back.key, back.value) == (b"cus-1", b'{"n": 1}')
    assert dict(back.headers) == {"ce_type": b"com.example.unknown.v1", "ce_traceparent": TRACE.encode()}
