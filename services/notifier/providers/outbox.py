"""The embedded default provider: every message lands in ``notifier.outbox`` (and optionally a file)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier.providers import Message, SendResult, accepted


class OutboxProvider:
    """Keyed by notification id (unique): sending a message again returns the first copy's id."""

    name = "outbox"
    dedupes = True

    def __init__(self, *, engine: AsyncEngine, directory: Path | None = None) -> None:
        self._engine = engine
        self._dir = directory

    async def send(self, message: Message) -> SendResult:
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        "INSERT INTO notifier.outbox (notification_id, channel, recipient, subject, body, "
                        "rule_id, headers) VALUES (:id, :channel, :to, :subject, :body, :rule, "
                        "CAST(:headers AS jsonb)) ON CONFLICT (notification_id) DO NOTHING RETURNING id"
                    ),
                    {
                        "id": message.notification_id,
                        "channel": message.channel.value,
                        "to": message.to,
                        "subject": message.subject,
                        "body": message.body,
                        "rule": message.rule_id,
                        "headers": json.dumps(dict(message.headers)),
                    },
                )
            ).first()
            if row is None:
                row = (
                    await conn.execute(
                        text("SELECT id FROM notifier.outbox WHERE notification_id = :id"),
                        {"id": message.notification_id},
                    )
                ).one()
            elif self._dir is not None:
                await asyncio.to_thread(self._write_file, message)
        return accepted(f"outbox-{row.id}")

    def _write_file(self, message: Message) -> None:
        assert self._dir is not None
        self._dir.mkdir(parents=True, exist_ok=True)
        lines = [f"To: {message.to}", f"Channel: {message.channel.value}"]
        if message.subject:
            lines.append(f"Subject: {message.subject}")
        lines += [f"{k}: {v}" for k, v in message.headers.items()]
        path = self._dir / f"{message.notification_id}.txt"
        path.write_text("\n".join(lines) + "\n\n" + message.body + "\n", encoding="utf-8")

    async def aclose(self) -> None:
        return None
