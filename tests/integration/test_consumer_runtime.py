"""A consumer runtime stopped while it is still starting stops at once, instead of after its 15 s bound."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.runtime import ConsumerRuntime
from shared.settings import CommonSettings
from shared.topics import Topics
from tests.helpers import make_settings
from tests.infra import Infra

pytestmark = pytest.mark.integration


async def _nothing(_conn: AsyncConnection, _batch: Sequence[Received]) -> list[OutgoingRecord]:
    return []


async def test_a_runtime_stopped_while_its_producer_connects_ends_its_consumer_loop(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    settings = make_settings(CommonSettings, kafka_bootstrap=infra.bootstrap, database_url=database_url)
    runtime = ConsumerRuntime(
        name="stop-early",
        settings=settings,
        topics=[topics.notifications],
        group=f"stop-early.{topics.prefix}",
        dlq_topic=topics.dlq_notifier,
        handler=_nothing,
    )
    await runtime.start()
    await asyncio.sleep(0)  # the runtime's task has begun connecting its producer, no consumer yet
    assert runtime.consumer is None
    await runtime.stop()
    task = runtime._task  # how it ended is the point
    assert task is not None and task.done()
    # Before the fix the consumer loop never heard of the stop: the task was cancelled after 15 s.
    assert not task.cancelled() and task.exception() is None
    assert runtime.consumer is not None and not runtime.consumer.running
