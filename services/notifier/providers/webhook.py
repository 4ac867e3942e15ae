"""Generic signed webhook: POST a JSON event, signed ``X-CSAT-Signature: t=<unix>,v1=<HMAC-SHA256 hex>``.

Receivers must dedupe on ``X-CSAT-Id`` (also sent as ``Idempotency-Key`` and as the body's ``id``):
that contract is what lets the notifier resend after an unanswered request without a duplicate
effect, so this provider ``dedupes``. Any 2xx is success.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from services.notifier import signing
from services.notifier.providers import Message, SendResult, Verdict, accepted
from services.notifier.providers.http import failure, guarded, post
from shared.security.ssrf import OutboundPolicy

EVENT_TYPE = "com.csat.notification.v1"


class WebhookProvider:
    name = "webhook"
    dedupes = True

    def __init__(
        self,
        *,
        secret: str,
        policy: OutboundPolicy,
        timeout_s: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._http = http or guarded(policy=policy, timeout_s=timeout_s)

    def body(self, message: Message) -> bytes:
        event = {
            "id": message.notification_id,
            "type": EVENT_TYPE,
            "created_at": self._clock().isoformat(),
            "data": {
                **dict(message.data),
                "notification_id": message.notification_id,
                "rule_id": message.rule_id,
                "customer_id": message.customer_id,
                "subject": message.subject,
                "body": message.body,
            },
        }
        return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()

    async def send(self, message: Message) -> SendResult:
        if not message.to.startswith(("https://", "http://")):
            return SendResult(Verdict.REJECTED, "rejected", detail="no webhook URL configured")
        raw = self.body(message)
        timestamp = int(self._clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            signing.ID_HEADER: message.notification_id,
            "Idempotency-Key": message.notification_id,
            signing.HEADER: signing.sign(self._secret, timestamp, raw),
        }
        response = await post(self._http, message.to, content=raw, headers=headers)
        if isinstance(response, SendResult):
            return response
        if 200 <= response.status_code < 300:
            return accepted(response.headers.get("X-Request-Id"))
        return failure(response, response.text.strip()[:100])

    async def aclose(self) -> None:
        await self._http.aclose()
