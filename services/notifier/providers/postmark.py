"""Postmark Email API (POST /email): JSON, ``X-Postmark-Server-Token``.

200 ``{"MessageID": ..., "ErrorCode": 0, "Message": "OK"}``; 422 carries a Postmark ``ErrorCode``:
406 means the recipient is inactive (hard bounce, spam complaint or manual suppression), which we add
to our own suppression list instead of retrying. Postmark takes no idempotency key.
"""

from __future__ import annotations

import httpx

from services.notifier.providers import Message, SendResult, Verdict, accepted
from services.notifier.providers.http import client, failure, json_or_empty, post

INACTIVE_RECIPIENT = 406


class PostmarkProvider:
    name = "postmark"
    dedupes = False

    def __init__(
        self,
        *,
        server_token: str,
        base_url: str,
        from_email: str,
        from_name: str,
        message_stream: str = "outbound",
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._from = f"{from_name} <{from_email}>"
        self._stream = message_stream
        self._http = http or client(
            base_url=base_url,
            timeout_s=timeout_s,
            headers={"Accept": "application/json", "X-Postmark-Server-Token": server_token},
        )

    def payload(self, message: Message) -> dict[str, object]:
        body: dict[str, object] = {
            "From": self._from,
            "To": message.to,
            "Subject": message.subject or "",
            "TextBody": message.body,
            "MessageStream": self._stream,
            "Metadata": {"notification_id": message.notification_id[:80]},
        }
        if message.html:
            body["HtmlBody"] = message.html
        if message.rule_id:
            body["Tag"] = message.rule_id[:1000]
        if message.headers:
            body["Headers"] = [{"Name": k, "Value": v} for k, v in message.headers.items()]
        return body

    async def send(self, message: Message) -> SendResult:
        response = await post(self._http, "/email", json=self.payload(message))
        if isinstance(response, SendResult):
            return response
        body = json_or_empty(response)
        code = body.get("ErrorCode")
        if response.status_code == 200 and code == 0:
            return accepted(str(body.get("MessageID") or "") or None)
        if code == INACTIVE_RECIPIENT:
            return SendResult(
                Verdict.RECIPIENT_OPTED_OUT, "recipient_opted_out", detail="postmark 406 inactive recipient"
            )
        message_text = str(body.get("Message") or response.text[:200])
        return failure(response, f"ErrorCode {code}: {message_text}" if code is not None else message_text)

    async def aclose(self) -> None:
        await self._http.aclose()
