"""How the consumer loop sorts a fetched batch against the stored offsets before the handler sees it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from shared.consumer import TransactionalConsumer


def _loop() -> TransactionalConsumer:
    none = cast(Any, None)
    return TransactionalConsumer(
        name="triage-test",
        topics=["t"],
        group="g",
        engine=none,
        consumer_factory=lambda: none,
        producer=none,
        dlq_topic="dlq",
        handler=none,
    )


def _record(partition: int, offset: int) -> Any:
    return SimpleNamespace(topic="t", partition=partition, offset=offset, key=b"k", value=b"{}", headers=[])


def test_a_record_fetched_twice_in_one_batch_reaches_the_handler_once() -> None:
    # One wave of 5 records handed twice by the client (seen with Tansu while a batch waited out its
    # pacing interval), then 3 more on another partition.
    records = [_record(1, o) for o in range(5)] * 2 + [_record(2, o) for o in range(3)]
    envelopes = [object() for _ in records]
    batch = _loop()._triage(records, cast(Any, envelopes), stored={})
    expected = [(1, 0), (1, 1), (1, 2), (1, 3), (1, 4), (2, 0), (2, 1), (2, 2)]
    assert [(x.partition, x.offset) for x in batch.fresh] == expected
    assert [x.envelope for x in batch.fresh] == envelopes[:5] + envelopes[10:]  # each with its own envelope
    assert batch.skipped == 5
    assert batch.next_offsets == {"t": {1: 5, 2: 3}}


def test_records_below_the_stored_offset_are_skipped_and_the_rest_handled_in_order() -> None:
    records = [_record(0, o) for o in range(4)]
    batch = _loop()._triage(records, cast(Any, [object() for _ in records]), stored={("t", 0): 2})
    assert [x.offset for x in batch.fresh] == [2, 3]
    assert batch.skipped == 2
    assert batch.next_offsets == {"t": {0: 4}}
