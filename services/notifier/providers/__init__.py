"""Provider adapters: each speaks one provider's wire format behind the ``Provider`` protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.events import Channel


@dataclass(frozen=True, slots=True)
class Message:
    notification_id: str
    channel: Channel
    to: str
    subject: str | None
    body: str
    rule_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendResult:
    """``retryable`` only where sending again cannot harm (429) or the outcome is unknown (5xx, timeout)."""

    accepted: bool
    provider_message_id: str | None = None
    retryable: bool = False
    retry_after_s: float | None = None
    detail: str | None = None


class Provider(Protocol):
    name: str
    #: True when sending the same notification twice cannot deliver it twice.
    idempotent: bool

    async def send(self, message: Message, *, conn: AsyncConnection) -> SendResult: ...
