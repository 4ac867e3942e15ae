"""SendGrid v3 Mail Send (POST /v3/mail/send): 202 accepted, ``X-Message-Id`` header, JSON errors.

SendGrid takes no idempotency key: a resend after an unanswered request could deliver twice.
"""

from __future__ import annotations

import httpx

from services.notifier.providers import Message, SendResult, accepted
from services.notifier.providers.http import client, failure, json_or_empty, post


class SendGridProvider:
    name = "sendgrid"
    dedupes = False

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        from_email: str,
        from_name: str,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._from = {"email": from_email, "name": from_name}
        self._http = http or client(
            base_url=base_url, timeout_s=timeout_s, headers={"Authorization": f"Bearer {api_key}"}
        )

    def payload(self, message: Message) -> dict[str, object]:
        body: dict[str, object] = {
            "personalizations": [{"to": [{"email": message.to}]}],
            "from": self._from,
            "subject": message.subject or "",
            "content": [{"type": "text/plain", "value": message.body}]
            + ([{"type": "text/html", "value": message.html}] if message.html else []),
            "custom_args": {"notification_id": message.notification_id},
        }
        if message.rule_id:
            body["categories"] = [message.rule_id[:255]]
        if message.headers:
            body["headers"] = dict(message.headers)
        return body

    async def send(self, message: Message) -> SendResult:
        response = await post(self._http, "/v3/mail/send", json=self.payload(message))
        if isinstance(response, SendResult):
            return response
        if response.status_code == 202:
            return accepted(response.headers.get("X-Message-Id"))
        errors = json_or_empty(response).get("errors") or []
        detail = "; ".join(str(e.get("message", "")) for e in errors if isinstance(e, dict))
        return failure(response, detail or response.text[:200])

    async def aclose(self) -> None:
        await self._http.aclose()
