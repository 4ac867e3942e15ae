"""The consumer's use case: each notification request becomes one durable delivery record, once per id.

The consumer's transaction stores the record together with the offsets (exactly once); sending is
the dispatcher's job, so a slow provider never holds a Kafka partition.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from services.notifier.metrics import NOTIFICATIONS
from services.notifier.ports import TRACE_KEY, IntakeStore, NewRequest
from shared import tracing
from shared.consumer import Received
from shared.envelope import OutgoingRecord
from shared.events import Channel, NotificationRequested


def _request_json(note: NotificationRequested, item: Received) -> str:
    body = note.model_dump(mode="json")
    parent = item.envelope.extensions.get(tracing.ATTRIBUTE)
    if parent:
        body[TRACE_KEY] = str(parent)
    return json.dumps(body)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Intake:
    def __init__(
        self,
        *,
        provider_names: Mapping[Channel, str],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._names = provider_names
        self._clock = clock

    async def handle(self, store: IntakeStore, batch: Sequence[Received]) -> list[OutgoingRecord]:
        """Record new requests as due now (or at ``not_before``); a replayed request changes nothing."""
        now = self._clock()
        seen: dict[str, tuple[NotificationRequested, Received]] = {}
        for item in batch:
            data = item.envelope.data
            if isinstance(data, NotificationRequested):
                seen.setdefault(data.notification_id, (data, item))
        if not seen:
            return []
        requests = [
            NewRequest(
                notification_id=note.notification_id,
                channel=note.channel.value,
                provider=self._names[note.channel],
                rule_id=note.rule_id,
                customer_id=note.customer_id,
                transactional=note.transactional,
                request_json=_request_json(note, item),
                due_at=max(now, _aware(note.not_before) or now),
                event_id=item.envelope.id,
                source_topic=item.topic,
                source_partition=item.partition,
                source_offset=item.offset,
            )
            for note, item in seen.values()
        ]
        inserted = await store.insert_requests(requests=requests)
        for item in batch:
            data = item.envelope.data
            if not isinstance(data, NotificationRequested):
                continue
            first = seen[data.notification_id][1] is item
            if not first or data.notification_id not in inserted:
                NOTIFICATIONS.labels(data.channel.value, self._names[data.channel], "duplicate").inc()
        return []
