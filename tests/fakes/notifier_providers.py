"""In-process providers for the dispatcher's unit tests: scripted answers per recipient, no sockets.

``ScriptedProvider`` answers with ``SendResult``s (or raises) from a script per address; ``http_provider``
puts a real adapter (SendGrid's or the webhook's) on ``httpx.MockTransport``, so a status code or a
transport error is sorted into its verdict by the production code.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from services.notifier.providers import Message, SendResult, Verdict, accepted
from services.notifier.providers.sendgrid import SendGridProvider
from services.notifier.providers.webhook import WebhookProvider
from shared.security.ssrf import OutboundPolicy


@dataclass
class Hold:
    """An answer given only once ``release()`` is called: the provider accepted, we have not heard yet."""

    then: SendResult | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


Step = SendResult | BaseException | Hold


class ScriptedProvider:
    """Answers each address's sends from its script, then accepts; ``sent`` lists every call."""

    def __init__(self, name: str = "scripted", *, dedupes: bool = False) -> None:
        self.name = name
        self.dedupes = dedupes
        self.sent: list[Message] = []
        self._script: dict[str, deque[Step]] = defaultdict(deque)

    def on(self, to: str, *steps: Step) -> None:
        self._script[to].extend(steps)

    def sent_to(self, to: str) -> list[Message]:
        return [m for m in self.sent if m.to == to]

    async def send(self, message: Message) -> SendResult:
        self.sent.append(message)
        script = self._script[message.to]
        step = script.popleft() if script else None
        if isinstance(step, Hold):
            await step.released.wait()
            step = step.then
        if isinstance(step, BaseException):
            raise step
        return step or accepted(f"{self.name}-{len(self.sent)}")

    async def aclose(self) -> None:
        return None


def refused(
    kind: str, detail: str, *, verdict: Verdict = Verdict.RETRY, retry_after_s: float | None = None
) -> SendResult:
    return SendResult(verdict, kind, retry_after_s=retry_after_s, detail=detail)


def http_provider(
    kind: str, answer: Callable[[httpx.Request], httpx.Response]
) -> SendGridProvider | WebhookProvider:
    """SendGrid's adapter (takes no idempotency key) or the signed webhook's (dedupes) on a mock transport."""
    transport = httpx.MockTransport(answer)
    if kind == "sendgrid":
        http = httpx.AsyncClient(base_url="https://sendgrid.test", transport=transport)
        return SendGridProvider(
            api_key="k", base_url="", from_email="f@example.com", from_name="F", http=http
        )
    return WebhookProvider(secret="s", policy=OutboundPolicy(), http=httpx.AsyncClient(transport=transport))
