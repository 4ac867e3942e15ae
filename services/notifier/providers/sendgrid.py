"""SendGrid v3 Mail Send (POST /v3/mail/send): 202 accepted, ``X-Message-Id`` header, JSON errors.

SendGrid takes no idempotency key: a resend after an unanswered request could deliver twice. Each
message carries ``custom_args.notification_id``, which the Email Activity API can filter on
(``GET /v3/messages?query=unique_args['notification_id']="..."``): ``lookup`` asks it whether a message
went out, so an ``unknown`` delivery can be reconciled. That API needs the paid Email Activity history
add-on and an API key allowed to read email activity; without them it answers 401/403/404 and the
lookup says it cannot tell. It is limited to 6 requests per minute per account.
"""

from __future__ import annotations

import httpx

from services.notifier.providers import (
    Absent,
    CannotTell,
    Found,
    LookupResult,
    Message,
    SendResult,
    accepted,
)
from services.notifier.providers.http import client, failure, json_or_empty, post

#: Characters a notification id may not carry into an activity query (it is quoted in double quotes).
_UNSAFE = set("\"\\'\n\r")


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

    @staticmethod
    def activity_query(notification_id: str) -> str:
        """The Email Activity query language's filter on a custom (unique) argument."""
        return f"unique_args['notification_id']=\"{notification_id}\""

    async def lookup(self, notification_id: str) -> LookupResult:
        """Whether SendGrid has a message carrying this notification id (Email Activity API)."""
        if not notification_id or _UNSAFE & set(notification_id):
            return CannotTell("unsafe_id", "the notification id cannot be quoted in a query", lasting=True)
        try:
            response = await self._http.get(
                "/v3/messages", params={"query": self.activity_query(notification_id), "limit": 10}
            )
        except httpx.HTTPError as exc:
            return CannotTell("network_error", f"Email Activity API unreachable: {type(exc).__name__}")
        status = response.status_code
        if status == 200:
            messages = json_or_empty(response).get("messages")
            if not isinstance(messages, list):
                return CannotTell("bad_answer", "Email Activity API: no messages list in the answer")
            ids = [str(m.get("msg_id")) for m in messages if isinstance(m, dict) and m.get("msg_id")]
            if not messages:
                return Absent()
            return Found(ids[0] if ids else None)
        if status in (401, 403, 404):
            return CannotTell(
                "not_available",
                f"Email Activity API not available ({status}): it needs SendGrid's Email Activity history "
                "add-on and an API key with email activity access",
                lasting=True,
            )
        if status == 429:
            return CannotTell("rate_limited", "Email Activity API rate limit (6 requests per minute)")
        if status >= 500:
            return CannotTell("server_error", f"Email Activity API answered {status}")
        return CannotTell("rejected", f"Email Activity API refused the query ({status})", lasting=True)

    async def aclose(self) -> None:
        await self._http.aclose()
