"""The notifier registers each survey SMS with the collector before Twilio gets it (issue 15): only survey
SMS are registered; the collector away means 'not sent, retry'; a refusal means the SMS never goes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from services.notifier.providers import Message, SendResult, Verdict, accepted
from services.notifier.providers.survey_sms import RegisteringSmsProvider, SurveySmsRegistrar, registration
from shared.events import Channel
from shared.vocabulary import SURVEY_TEMPLATE

LINK = "https://collect.example.com/v1/email/tok.en"


def message(
    *, channel: Channel = Channel.SMS, template: str = SURVEY_TEMPLATE, link: str | None = LINK
) -> Message:
    return Message(
        notification_id="survey-invite-inv-1",
        channel=channel,
        to="+33612345678" if channel is Channel.SMS else "ana@example.com",
        subject=None,
        body="Satisfait ? Repondez de 1 a 5",
        customer_id="cus_1",
        data={
            "template": template,
            "locale": "fr",
            "context": {"survey": {"invitation_id": "inv-1", "answer_url": link}},
        },
    )


class Recording:
    name = "twilio"
    dedupes = False

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> SendResult:
        self.sent.append(message)
        return accepted("SM1")

    async def aclose(self) -> None:
        return None


def test_only_survey_sms_with_a_link_are_registered() -> None:
    assert registration(message()) == {
        "phone": "+33612345678",
        "customer": {"id": "cus_1", "locale": "fr"},
        "answer_link": LINK,
        "survey_id": "inv-1",
    }
    assert registration(message(channel=Channel.EMAIL)) is None
    assert registration(message(template="thank_you")) is None
    assert registration(message(link=None)) is None


@pytest.mark.parametrize(
    ("answer", "verdict", "sent"),
    [
        (httpx.Response(201, json={"request_id": "inv-x"}), Verdict.ACCEPTED, 1),
        (httpx.Response(503, headers={"Retry-After": "2"}), Verdict.RETRY, 0),
        (httpx.Response(422, json={"detail": "answer_link: expired"}), Verdict.REJECTED, 0),
        (httpx.ConnectError("refused"), Verdict.RETRY, 0),
        (httpx.ReadTimeout("slow"), Verdict.RETRY, 0),  # registering twice is harmless: retry
    ],
)
async def test_the_sms_goes_only_once_the_collector_has_it(answer: Any, verdict: Verdict, sent: int) -> None:
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
    inner = Recording()
    provider = RegisteringSmsProvider(inner, SurveySmsRegistrar(base_url="", token="tok", http=http))
    result = await provider.send(message())
    assert result.verdict is verdict and len(inner.sent) == sent
    assert seen[0]["path"] == "/v1/sms-surveys" and seen[0]["answer_link"] == LINK
    assert seen[0]["auth"] == "Bearer tok"
    if verdict is Verdict.REJECTED:
        assert "answer_link: expired" in (result.detail or "")
    other = await provider.send(message(template="thank_you"))  # not a survey: straight to Twilio
    assert other.verdict is Verdict.ACCEPTED and len(seen) == 1
    await provider.aclose()
