"""Survey SMS registered with the collector before they go out, so the reply finds its invitation.

A survey invitation by SMS is answered by replying "4" to the Twilio number; Twilio posts the reply to
the collector's webhook, which knows the sender only by number. Before the SMS provider is called, the
invitation's signed answer link (the one its email would carry) and the number are posted to the
collector's ``POST /v1/sms-surveys`` (internal listener, a token with ``surveys:admin``): the reply is
then rated under the invitation's rating id. Registering is idempotent on the collector's side, so a
retry, a reminder or a crash between registering and sending changes nothing; an SMS whose reply could
not be matched is not sent (retried while the collector is away, refused for good on a 4xx).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from services.notifier.providers import Message, Provider, SendResult, Verdict
from services.notifier.providers.http import client, failure, json_or_empty, post
from shared.events import Channel
from shared.vocabulary import SURVEY_TEMPLATE


def registration(message: Message) -> dict[str, Any] | None:
    """The collector's request body for a survey SMS; None for any other message."""
    data: Mapping[str, Any] = message.data
    if message.channel is not Channel.SMS or data.get("template") != SURVEY_TEMPLATE:
        return None
    survey = (data.get("context") or {}).get("survey") or {}
    link, invitation = survey.get("answer_url"), survey.get("invitation_id")
    if not link or not message.customer_id:
        return None
    body: dict[str, Any] = {
        "phone": message.to,
        "customer": {"id": message.customer_id, "locale": data.get("locale")},
        "answer_link": link,
    }
    if invitation:
        body["survey_id"] = invitation
    return body


class SurveySmsRegistrar:
    """Posts a survey SMS's registration to the collector; answers like a provider would."""

    def __init__(
        self, *, base_url: str, token: str, timeout_s: float = 10.0, http: httpx.AsyncClient | None = None
    ) -> None:
        self._auth = {"Authorization": f"Bearer {token}"}
        self._http = http or client(base_url=base_url, timeout_s=timeout_s)

    async def register(self, body: dict[str, Any]) -> SendResult | None:
        """None once the collector has it; else why the SMS must wait (RETRY) or not go (REJECTED)."""
        response = await post(self._http, "/v1/sms-surveys", json=body, headers=self._auth)
        if isinstance(response, SendResult):
            # The registration is idempotent and nothing reached the customer: always safe to retry.
            if response.verdict is Verdict.AMBIGUOUS:
                return SendResult(Verdict.RETRY, "network_error", detail=response.detail)
            return response
        if response.status_code == 201:
            return None
        problem = str(json_or_empty(response).get("detail") or "")[:200]
        return failure(response, f"collector: the survey SMS could not be registered: {problem}")

    async def aclose(self) -> None:
        await self._http.aclose()


class RegisteringSmsProvider:
    """The SMS provider, with each survey SMS registered with the collector first."""

    def __init__(self, inner: Provider, registrar: SurveySmsRegistrar) -> None:
        self._inner = inner
        self._registrar = registrar
        self.name = inner.name
        self.dedupes = inner.dedupes

    async def send(self, message: Message) -> SendResult:
        body = registration(message)
        if body is not None:
            refused = await self._registrar.register(body)
            if refused is not None:
                return refused
        return await self._inner.send(message)

    async def aclose(self) -> None:
        await self._registrar.aclose()
        await self._inner.aclose()
