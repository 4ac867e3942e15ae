"""Mailgun Messages API (POST /v3/{domain}/messages): form-encoded, basic auth ``api:<key>``.

200 ``{"id": "<...@domain>", "message": "Queued. Thank you."}``; errors carry ``{"message": ...}``
(401 is a plain ``Forbidden``). Extra headers travel as ``h:<Name>`` fields, our ids as ``v:`` variables.
Mailgun takes no idempotency key.
"""

from __future__ import annotations

import httpx

from services.notifier.providers import Message, SendResult, accepted
from services.notifier.providers.http import client, failure, json_or_empty, post


class MailgunProvider:
    name = "mailgun"
    dedupes = False

    def __init__(
        self,
        *,
        api_key: str,
        domain: str,
        base_url: str,
        from_email: str,
        from_name: str,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._path = f"/v3/{domain}/messages"
        self._from = f"{from_name} <{from_email}>"
        self._http = http or client(base_url=base_url, timeout_s=timeout_s, auth=("api", api_key))

    def form(self, message: Message) -> dict[str, str]:
        fields = {
            "from": self._from,
            "to": message.to,
            "subject": message.subject or "",
            "text": message.body,
            "v:notification_id": message.notification_id,
        }
        if message.html:
            fields["html"] = message.html
        if message.rule_id:
            fields["o:tag"] = message.rule_id
        for name, value in message.headers.items():
            fields[f"h:{name}"] = value
        return fields

    async def send(self, message: Message) -> SendResult:
        response = await post(self._http, self._path, data=self.form(message))
        if isinstance(response, SendResult):
            return response
        body = json_or_empty(response)
        if response.status_code == 200 and body.get("id"):
            return accepted(str(body["id"]))
        return failure(response, str(body.get("message") or response.text[:200]))

    async def aclose(self) -> None:
        await self._http.aclose()
