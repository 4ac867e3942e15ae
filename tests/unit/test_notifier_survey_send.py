"""A survey invitation request as the notifier composes it: multipart email with the score buttons
(the collector's signed link + ?score=N), RFC 8058 unsubscribe, per locale, mail-client safe; the SMS
with "reply 1-5"; a broken invitation fails as a template error instead of sending something wrong."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.notifier import mailsafe
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from services.notifier.transitions import Admit, DispatchConfig, Due, Final, Send, address_of, admit, compose
from shared.events import Channel, NotificationRequested, OutcomeStatus, Recipient
from shared.vocabulary import SURVEY_TEMPLATE
from tests.unit.notifier_support import row_for

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CFG = DispatchConfig(daily_cap=3, public_base_url="https://n.example", unsubscribe_mailto="unsub@example.com")
TOKENS = UnsubscribeTokens(["unit-secret"])
LINK = "https://c.example/v1/email/tok.en"


def request(channel: Channel = Channel.EMAIL, locale: str = "fr", **survey: Any) -> NotificationRequested:
    return NotificationRequested(
        notification_id="survey-invite-inv-1",
        rule_id="survey:post-delivery",
        action="survey_invitation",
        channel=channel,
        recipient=Recipient(email="ana@example.com")
        if channel is Channel.EMAIL
        else Recipient(phone="+33612345678"),
        template=SURVEY_TEMPLATE,
        locale=locale,
        customer_id="cus-1",
        context={
            "survey": {
                "metric": "csat",
                "scale": "1-5",
                "question": "Êtes-vous satisfait de votre livraison ?"
                if locale == "fr"
                else "How was your delivery?",
                "follow_up": None,
                "answer_url": LINK,
                "expires_at": (NOW + timedelta(days=7)).isoformat(),
                "reminder": False,
                "brand": "Shop",
                **survey,
            }
        },
        requested_at=NOW,
    )


def composed(note: NotificationRequested, cfg: DispatchConfig = CFG) -> Final | Send:
    due = Due(
        row_for(note, counted_day=None, attempts=0),
        note,
        "outbox",
        address_of(note, None, cfg.address_keys),
        None,
        NOW,
    )
    step = admit(due, cfg)
    assert isinstance(step, Admit)
    return compose(due, step, cfg, templates=Templates(), tokens=TOKENS)


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_the_email_has_text_html_buttons_and_one_click_unsubscribe(locale: str) -> None:
    sent = composed(request(locale=locale))
    assert isinstance(sent, Send)
    message = sent.message
    assert message.html is not None and mailsafe.check(message.html) == []
    for score in range(1, 6):
        assert f"{LINK}?score={score}" in message.body
        assert f"{LINK}?score={score}" in message.html
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = message.headers["List-Unsubscribe"].split(", ")[0].strip("<>")
    assert unsubscribe.startswith("https://n.example/u/") and unsubscribe in message.body
    assert message.subject == request(locale=locale).context["survey"]["question"]
    assert ('lang="fr"' in message.html) is (locale == "fr")


def test_the_reminder_says_so_in_its_subject() -> None:
    sent = composed(request(locale="en", reminder=True))
    assert isinstance(sent, Send) and sent.message.subject != "How was your delivery?"
    assert "How was your delivery?" in (sent.message.subject or "")


def test_the_sms_asks_to_reply_with_a_number_in_one_7bit_message() -> None:
    sent = composed(request(Channel.SMS))
    assert isinstance(sent, Send) and sent.message.html is None
    assert sent.message.body.startswith("Etes-vous satisfait de votre livraison ?")
    assert "1 à 5" in sent.message.body or "1 a 5" in sent.message.body
    assert len(sent.message.body) <= 160


def test_http_links_are_refused_unless_the_stack_allows_them() -> None:
    plain = request(answer_url="http://127.0.0.1:8000/v1/email/tok")
    failed = composed(plain)
    assert isinstance(failed, Final) and (failed.status, failed.reason) == (OutcomeStatus.FAILED, "template")
    assert isinstance(composed(plain, replace(CFG, allow_http_links=True)), Send)


def test_an_invitation_without_its_survey_fails_as_a_template_error() -> None:
    broken = request().model_copy(update={"context": {}})
    failed = composed(broken)
    assert isinstance(failed, Final) and failed.reason == "template"
