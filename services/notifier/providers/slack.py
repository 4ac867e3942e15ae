"""Slack incoming webhooks: POST JSON ``{"text", "blocks"}`` to the webhook URL; 200 ``ok``.

Errors are short plain-text codes (400 ``invalid_payload``, 403 ``action_prohibited``, 404
``channel_not_found``/``no_service``, 410 ``channel_is_archived``, 429 with ``Retry-After``). The URL is
itself the credential: it is never logged. Incoming webhooks take no idempotency key.
"""

from __future__ import annotations

import httpx

from services.notifier.providers import Message, SendResult, Verdict, accepted
from services.notifier.providers.http import failure, guarded, post
from shared.security.ssrf import OutboundPolicy

HEADER_MAX = 150
SECTION_MAX = 3000


def mrkdwn_escape(text: str) -> str:
    """Slack treats ``&``, ``<`` and ``>`` as control characters in mrkdwn text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SlackProvider:
    name = "slack"
    dedupes = False

    def __init__(
        self, *, policy: OutboundPolicy, timeout_s: float = 10.0, http: httpx.AsyncClient | None = None
    ) -> None:
        self._http = http or guarded(policy=policy, timeout_s=timeout_s)

    def payload(self, message: Message) -> dict[str, object]:
        body = mrkdwn_escape(message.body)
        blocks: list[dict[str, object]] = []
        if message.subject:
            blocks.append(
                {"type": "header", "text": {"type": "plain_text", "text": _clip(message.subject, HEADER_MAX)}}
            )
        for start in range(0, max(len(body), 1), SECTION_MAX):
            chunk = body[start : start + SECTION_MAX]
            if chunk.strip():
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
        fallback = f"{message.subject}\n{body}" if message.subject else body
        return {"text": _clip(fallback, 4000), "blocks": blocks[:50]}

    async def send(self, message: Message) -> SendResult:
        if not message.to.startswith(("https://", "http://")):
            return SendResult(Verdict.REJECTED, "rejected", detail="no Slack webhook URL configured")
        response = await post(self._http, message.to, json=self.payload(message))
        if isinstance(response, SendResult):
            return response
        if response.status_code == 200:
            return accepted(None)
        return failure(response, response.text.strip()[:100])

    async def aclose(self) -> None:
        await self._http.aclose()
