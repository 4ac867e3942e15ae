"""The embedded default provider: every message lands in ``notifier.outbox`` (and optionally a file)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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

    async def deliver_in(self, conn: AsyncConnection, messages: Sequence[Message]) -> list[SendResult]:
        """Write many messages in the caller's transaction: they exist exactly when its claim commits.

        The same rows as ``send`` (a notification id already there keeps its first copy); files are
        written before the caller commits, as ``send`` does.
        """
        if not messages:
            return []
        rows = await conn.execute(
            text(
                "INSERT INTO notifier.outbox (notification_id, channel, recipient, subject, body, rule_id, "
                "headers) SELECT id, ch, rcpt, subj, body, rule, CAST(h AS jsonb) "
                "FROM unnest(CAST(:ids AS text[]), CAST(:chs AS text[]), CAST(:tos AS text[]), "
                "CAST(:subjects AS text[]), CAST(:bodies AS text[]), CAST(:rules AS text[]), "
                "CAST(:headers AS text[])) WITH ORDINALITY AS m(id, ch, rcpt, subj, body, rule, h, n) "
                "ORDER BY n ON CONFLICT (notification_id) DO NOTHING RETURNING notification_id, id"
            ),
            {
                "ids": [m.notification_id for m in messages],
                "chs": [m.channel.value for m in messages],
                "tos": [m.to for m in messages],
                "subjects": [m.subject for m in messages],
                "bodies": [m.body for m in messages],
                "rules": [m.rule_id for m in messages],
                "headers": [json.dumps(dict(m.headers)) for m in messages],
            },
        )
        ids = {r.notification_id: r.id for r in rows}
        new = [m for m in messages if m.notification_id in ids]
        missing = [m.notification_id for m in messages if m.notification_id not in ids]
        if missing:
            found = await conn.execute(
                text("SELECT notification_id, id FROM notifier.outbox WHERE notification_id = ANY(:ids)"),
                {"ids": missing},
            )
            ids.update({r.notification_id: r.id for r in found})
        if new and self._dir is not None:
            await asyncio.to_thread(self._write_files, new)
        return [accepted(f"outbox-{ids[m.notification_id]}") for m in messages]

    def _write_files(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self._write_file(message)

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
