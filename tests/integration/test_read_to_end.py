"""``tests.helpers.read_to_end``, which the "nothing more was published" checks rely on, reads exactly
what the topic holds: every record of every partition, none twice, whatever the batches."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.topics import Topics
from tests.helpers import produce_raw, read_to_end
from tests.infra import Infra

pytestmark = pytest.mark.integration


async def test_reads_every_record_the_topic_holds_and_nothing_more(infra: Infra, topics: Topics) -> None:
    topic = topics.notifications
    assert await read_to_end(infra.bootstrap, topic) == []
    # Several record batches per partition (Tansu's ListOffsets counts those, not records).
    for wave in range(3):
        await produce_raw(
            infra.bootstrap, topic, [(f"k{i}".encode(), f"{wave}-{i}".encode(), []) for i in range(40)]
        )
        records = await read_to_end(infra.bootstrap, topic)
        assert len(records) == 40 * (wave + 1)
        assert Counter(r.value for r in records) == {
            f"{w}-{i}".encode(): 1 for w in range(wave + 1) for i in range(40)
        }
        assert len({r.partition for r in records}) > 1  # spread over the topic's partitions
