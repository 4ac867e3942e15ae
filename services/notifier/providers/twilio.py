"""Twilio Programmable Messaging (POST /2010-04-01/Accounts/{sid}/Messages.json): form-encoded, basic auth.

201 with the Message resource (``sid`` ``SM...``); errors are ``{"code", "message", "more_info",
"status"}``. Code 21610: the recipient replied STOP, so we suppress the number; Twilio takes no
idempotency key on message creation.
"""

from __future__ import annotations

import httpx

from services.notifier.providers import Message, SendResult, Verdict, accepted
from services.notifier.providers.http import client, failure, json_or_empty, post

UNSUBSCRIBED_RECIPIENT = 21610


class TwilioProvider:
    name = "twilio"
    dedupes = False

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        base_url: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
        timeout_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not (from_number or messaging_service_sid):
            raise ValueError("Twilio needs a From number or a MessagingServiceSid")
        self._path = f"/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._from = from_number
        self._service = messaging_service_sid
        self._callback = status_callback
        self._http = http or client(base_url=base_url, timeout_s=timeout_s, auth=(account_sid, auth_token))

    def form(self, message: Message) -> dict[str, str]:
        fields = {"To": message.to, "Body": message.body}
        if self._service:
            fields["MessagingServiceSid"] = self._service
        else:
            assert self._from is not None
            fields["From"] = self._from
        if self._callback:
            fields["StatusCallback"] = self._callback
        return fields

    async def send(self, message: Message) -> SendResult:
        response = await post(self._http, self._path, data=self.form(message))
        if isinstance(response, SendResult):
            return response
        body = json_or_empty(response)
        if response.status_code in (200, 201) and body.get("sid"):
            return accepted(str(body["sid"]))
        code = body.get("code")
        if code == UNSUBSCRIBED_RECIPIENT:
            return SendResult(
                Verdict.RECIPIENT_OPTED_OUT,
                "recipient_opted_out",
                detail="twilio 21610 recipient replied STOP",
            )
        text = str(body.get("message") or response.text[:200])
        return failure(response, f"code {code}: {text}" if code is not None else text)

    async def aclose(self) -> None:
        await self._http.aclose()
