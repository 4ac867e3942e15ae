"""The embedded default provider: every message lands in ``notifier.outbox`` (and optionally a file)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.providers import Message, SendResult


class OutboxProvider:
    """Writes in the consumer's transaction, keyed by notification id: a replay cannot deliver twice."""

    name = "outbox"
    idempotent = True

    def __init__(self, *, directory: Path | None = None) -> None:
        self._dir = directory

    async def send(self, message: Message, *, conn: AsyncConnection) -> SendResult:
        result = await conn.execute(
            text(
                "INSERT INTO notifier.outbox (notification_id, channel, recipient, subject, body, rule_id) "
                "VALUES (:id, :channel, :to, :subject, :body, :rule) "
                "ON CONFLICT (notification_id) DO NOTHING RETURNING id"
            ),
            {
                "id": message.notification_id,
                "channel": message.channel.value,
                "to": message.to,
                "subject": message.subject,
                "body": message.body,
                "rule": message.rule_id,
            },
        )
        row = result.first()
        if row is not None and self._dir is not None:
            await asyncio.to_thread(self._write_file, message)
        return SendResult(accepted=True, provider_message_id=f"outbox-{row.id}" if row else None)

    def _write_file(self, message: Message) -> None:
        assert self._dir is not None
        self._dir.mkdir(parents=True, exist_ok=True)
        lines = [f"To: {message.to}", f"Channel: {message.channel.value}"]
        if message.subject:
            lines.append(f"Subject: {message.subject}")
        lines += [f"{k}: {v}" for k, v in message.headers.items()]
        path = self._dir / f"{message.notification_id}.txt"
        path.write_text("\n".join(lines) + "\n\n" + message.body + "\n", encoding="utf-8")
