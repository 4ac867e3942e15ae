"""The in-app channel: a survey invitation kept by the collector for the customer's web widget.

Nothing is sent to an address. Delivering an in-app invitation means registering its signed answer link
with the collector (``POST /v1/inapp-surveys`` on its internal listener, a token with ``surveys:admin``,
the same ``CSAT_COLLECTOR_URL`` and ``CSAT_COLLECTOR_TOKEN`` as survey SMS): the widget of that customer,
once proven by the site's server, shows the question on the next visit and answers through the link
until the answer window ends. Registering is idempotent on the collector's side (a retry, a reminder, a
crash between registering and recording the outcome change nothing), so the provider dedupes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.notifier.providers import Message, SendResult, Verdict, accepted
from services.notifier.providers.survey_sms import SurveySmsRegistrar
from shared.events import Channel
from shared.vocabulary import SURVEY_TEMPLATE

INAPP_PATH = "/v1/inapp-surveys"


def inapp_registration(message: Message) -> dict[str, Any] | None:
    """The collector's request body for an in-app survey invitation; None when the message is not one."""
    data: Mapping[str, Any] = message.data
    if message.channel is not Channel.IN_APP or data.get("template") != SURVEY_TEMPLATE:
        return None
    survey = (data.get("context") or {}).get("survey") or {}
    link, invitation = survey.get("answer_url"), survey.get("invitation_id")
    if not link or not message.customer_id:
        return None
    body: dict[str, Any] = {
        "customer": {"id": message.customer_id, "locale": data.get("locale")},
        "answer_link": link,
    }
    if invitation:
        body["survey_id"] = invitation
    return body


class InAppProvider:
    """Delivers an in-app survey invitation by registering it with the collector."""

    name = "collector"
    dedupes = True  # the collector keeps one row per invitation: registering again reaches nobody twice

    def __init__(self, registrar: SurveySmsRegistrar | None) -> None:
        self._registrar = registrar

    async def send(self, message: Message) -> SendResult:
        body = inapp_registration(message)
        if body is None:
            return SendResult(Verdict.REJECTED, "rejected", detail="only survey invitations go in-app")
        if self._registrar is None:
            return SendResult(
                Verdict.REJECTED, "rejected", detail="in-app surveys need CSAT_COLLECTOR_URL (the collector)"
            )
        refused = await self._registrar.register(body, path=INAPP_PATH, what="in-app survey")
        return refused if refused is not None else accepted(None)

    async def aclose(self) -> None:
        if self._registrar is not None:
            await self._registrar.aclose()
