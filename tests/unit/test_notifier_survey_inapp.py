"""The in-app channel (issue 15): delivering an in-app survey invitation is registering its signed answer
link with the collector, which keeps it for the customer's widget; the collector away means 'retry', a
refusal 'failed', and without a collector configured nothing pretends to have delivered it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.notifier.providers import Message, Verdict
from services.notifier.providers.survey_inapp import InAppProvider, inapp_registration
from services.notifier.providers.survey_sms import SurveySmsRegistrar
from services.notifier.transitions import render_survey
from shared.events import Channel, NotificationRequested, Recipient
from shared.vocabulary import SURVEY_TEMPLATE

LINK = "https://collect.example.com/v1/email/tok.en"


def message(
    *, channel: Channel = Channel.IN_APP, template: str = SURVEY_TEMPLATE, link: str | None = LINK
) -> Message:
    return Message(
        notification_id="survey-invite-inv-1",
        channel=channel,
        to="cus_1",
        subject=None,
        body="Satisfait ?",
        customer_id="cus_1",
        data={
            "template": template,
            "locale": "fr",
            "context": {"survey": {"invitation_id": "inv-1", "answer_url": link}},
        },
    )


def test_only_in_app_survey_invitations_with_a_link_are_registered() -> None:
    assert inapp_registration(message()) == {
        "customer": {"id": "cus_1", "locale": "fr"},
        "answer_link": LINK,
        "survey_id": "inv-1",
    }
    assert inapp_registration(message(channel=Channel.SMS)) is None
    assert inapp_registration(message(template="thank_you")) is None
    assert inapp_registration(message(link=None)) is None


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        (httpx.Response(201, json={"request_id": "inapp-x"}), Verdict.ACCEPTED),
        (httpx.Response(503, headers={"Retry-After": "2"}), Verdict.RETRY),
        (httpx.Response(422, json={"detail": "answer_link: expired"}), Verdict.REJECTED),
        (httpx.ConnectError("refused"), Verdict.RETRY),
        (httpx.ReadTimeout("slow"), Verdict.RETRY),  # registering twice is harmless: retry
    ],
)
async def test_delivered_once_the_collector_keeps_it(answer: Any, verdict: Verdict) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(
            {
                "path": request.url.path,
                "auth": request.headers["authorization"],
                **json.loads(request.content),
            }
        )
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, httpx.Response)
        return answer

    http = httpx.AsyncClient(base_url="http://collector", transport=httpx.MockTransport(handler))
    provider = InAppProvider(SurveySmsRegistrar(base_url="", token="tok", http=http))
    assert provider.dedupes  # one row per invitation at the collector
    result = await provider.send(message())
    assert result.verdict is verdict
    assert seen[0]["path"] == "/v1/inapp-surveys" and seen[0]["answer_link"] == LINK
    assert seen[0]["auth"] == "Bearer tok"
    if verdict is Verdict.REJECTED:
        assert "in-app survey could not be registered" in (result.detail or "")
    other = await provider.send(message(template="thank_you"))  # only survey invitations go in-app
    assert other.verdict is Verdict.REJECTED and len(seen) == 1
    await provider.aclose()
    await provider.aclose()  # shared with the SMS provider: closing twice is fine


async def test_without_a_collector_an_in_app_invitation_fails_instead_of_vanishing() -> None:
    result = await InAppProvider(None).send(message())
    assert result.verdict is Verdict.REJECTED and "CSAT_COLLECTOR_URL" in (result.detail or "")


def test_an_in_app_invitation_renders_no_email() -> None:
    note = NotificationRequested(
        notification_id="survey-invite-inv-1",
        rule_id="survey:s",
        action="survey_invitation",
        channel=Channel.IN_APP,
        recipient=Recipient(),
        template=SURVEY_TEMPLATE,
        locale="fr",
        customer_id="cus_1",
        context={"survey": {"question": "Satisfait ?", "answer_url": LINK}},
        requested_at=datetime(2026, 12, 5, 9, 0, tzinfo=UTC),
    )
    assert render_survey(note, note.context, allow_http=False) == (None, "Satisfait ?", None)
