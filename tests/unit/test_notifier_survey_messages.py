"""Survey invitations as sent: every rendered email passes the mail-client-safe check, SMS fit 160 units."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime

import pytest

from services.notifier.mailsafe import MAX_BYTES, check
from services.notifier.survey_messages import (
    SurveyInvitation,
    buttons,
    render_survey_email,
    render_survey_sms,
    with_score,
)
from shared.gsm7 import SMS_UNITS, SURVEY_QUESTION_UNITS, to_gsm7, units
from shared.scales import SCALES, Metric
from shared.vocabulary import LOCALES

ANSWER_URL = "https://collect.example.com/v1/email/eyJzIjoiaW52LTEifQ.sig"
UNSUBSCRIBE_URL = "https://notify.example.com/u/TOKEN"
QUESTIONS = {
    "en": "How satisfied are you with your delivery?",
    "fr": "Êtes-vous satisfait de votre livraison ?",
}
FOLLOW_UPS = {"en": "What could we have done better?", "fr": "Qu\u2019aurions-nous pu mieux faire ?"}

EVERY_EMAIL = [
    pytest.param(
        metric, scale, locale, reminder, extras, id=f"{metric.value}-{scale}-{locale}-{reminder}-{extras}"
    )
    for (metric, scale), locale, reminder, extras in itertools.product(
        SCALES, LOCALES, (False, True), ("plain", "follow_up+logo")
    )
]


def invitation(metric: Metric, scale: str, locale: str, *, reminder: bool, extras: str) -> SurveyInvitation:
    return SurveyInvitation(
        locale=locale,
        metric=metric.value,
        scale=scale,
        question=QUESTIONS[locale],
        answer_url=ANSWER_URL,
        unsubscribe_url=UNSUBSCRIBE_URL,
        expires_at=datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        brand="Acme & Co",
        follow_up=FOLLOW_UPS[locale] if extras != "plain" else None,
        logo_url="https://cdn.example.com/logo.png" if extras != "plain" else None,
        reminder=reminder,
        unsubscribe_mailto="mailto:unsubscribe@notify.example.com?subject=unsubscribe%20TOKEN",
    )


@pytest.mark.parametrize(("metric", "scale", "locale", "reminder", "extras"), EVERY_EMAIL)
def test_every_survey_email_is_mail_client_safe_and_complete(
    metric: Metric, scale: str, locale: str, reminder: bool, extras: str
) -> None:
    email = render_survey_email(invitation(metric, scale, locale, reminder=reminder, extras=extras))
    assert check(email.html) == []
    assert f'<html lang="{locale}">' in email.html
    for score in SCALES[(metric, scale)].scores():
        link = f"{ANSWER_URL}?score={score}"
        assert f'href="{link}"' in email.html and link in email.text  # one-click buttons, both parts
    assert email.html.count(UNSUBSCRIBE_URL) == 1 and UNSUBSCRIBE_URL in email.text
    mailto = "mailto:unsubscribe@notify.example.com?subject=unsubscribe%20TOKEN"
    assert email.headers == {
        "List-Unsubscribe": f"<{UNSUBSCRIBE_URL}>, <{mailto}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert (
        email.subject.endswith(QUESTIONS[locale])
        and email.subject.startswith(("Rappel", "Reminder")) is reminder
    )
    assert ("Acme &amp; Co" in email.html) and "Acme & Co" in email.text  # escaped in HTML only
    assert (FOLLOW_UPS[locale] in email.text) is (extras != "plain")
    assert ("2026" in email.text) and ("{" not in email.text + email.html)


def test_the_question_is_escaped_in_html() -> None:
    base = invitation(Metric.CSAT, "1-5", "en", reminder=False, extras="plain")
    email = render_survey_email(dataclasses.replace(base, question='Was it <b>"fast"</b>?'))
    assert "<b>" not in email.html and "&lt;b&gt;&#34;fast&#34;&lt;/b&gt;" in email.html
    assert check(email.html) == []


@pytest.mark.parametrize(
    ("url", "score", "expected"),
    [
        ("https://c.example/v1/email/T", 4, "https://c.example/v1/email/T?score=4"),
        ("https://c.example/v1/email/T?lang=fr", 0, "https://c.example/v1/email/T?lang=fr&score=0"),
        ("https://c.example/v1/email/T?score=9", 2, "https://c.example/v1/email/T?score=2"),
    ],
)
def test_score_links(url: str, score: int, expected: str) -> None:
    assert with_score(url, score) == expected


@pytest.mark.parametrize(
    ("metric", "scale", "locale", "labels", "first_title"),
    [
        (Metric.CSAT, "1-5", "en", ["1", "2", "3", "4", "5"], "1 - Very dissatisfied"),
        (Metric.CSAT, "1-3", "fr", ["Déçu", "Neutre", "Ravi"], "Déçu"),
        (Metric.CSAT, "yes-no", "en", ["Yes", "No"], "Yes"),
        (Metric.NPS, "0-10", "fr", [str(n) for n in range(11)], "0 - Pas du tout probable"),
        (Metric.CES, "1-5", "en", ["1", "2", "3", "4", "5"], "1 - Very little effort"),
    ],
)
def test_buttons_per_scale(
    metric: Metric, scale: str, locale: str, labels: list[str], first_title: str
) -> None:
    made = buttons(SCALES[(metric, scale)], locale, ANSWER_URL)
    assert [b.label for b in made] == labels and made[0].title == first_title


@pytest.mark.parametrize(
    ("html", "rule"),
    [
        ("<script>alert(1)</script>", "forbidden-element"),
        ('<link rel="stylesheet" href="https://x.example/a.css">', "forbidden-element"),
        ("<style>td{color:red}</style>", "forbidden-element"),
        ('<form method="post" action="https://x.example"><button>5</button></form>', "forbidden-element"),
        ("<div>layout</div>", "forbidden-element"),
        ('<td onclick="x()">5</td>', "event-handler"),
        ('<a href="javascript:alert(1)">5</a>', "url-scheme"),
        ('<a href="http://c.example/v1/email/T?score=5">5</a>', "url-scheme"),
        ('<img src="https://x.example/logo.png" width="1" height="1">', "img-alt"),
        ('<img src="https://x.example/logo.png" alt="Acme">', "img-size"),
        ('<td style="display:flex">5</td>', "css"),
        ('<td style="position:absolute;top:0">5</td>', "css"),
        ('<td style="background:url(https://x.example/bg.png)">5</td>', "css"),
        ('<td class="button">5</td>', "css"),
        ('<a href="https://c.example/5"> </a>', "link-text"),
        ("<table><tr><td>5</td></tr></table>", "layout-table"),
        ("<!-- " + "x" * MAX_BYTES + " -->", "size"),
    ],
)
def test_each_rule_of_the_checker_fires(html: str, rule: str) -> None:
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"></head><body>'
        f'<table role="presentation"><tr><td>{html}</td></tr></table></body></html>'
    )
    assert rule in {v.rule for v in check(page)}


def test_a_page_without_the_basics_is_refused() -> None:
    assert {v.rule for v in check("<html><body><p>Hi</p></body></html>")} == {
        "doctype",
        "lang",
        "charset",
        "layout-table",
    }
    assert (
        check('<a href="http://127.0.0.1:8000/v1/email/T?score=5">5</a>', allow_http=True)[0].rule
        != "url-scheme"
    )


LONG_QUESTION = (
    "How satisfied were you with the delivery of your order, the packaging and the courtesy of our driver?"
)


@pytest.mark.parametrize(("metric", "scale"), list(SCALES))
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("question", ["short", "limit", "long"])
def test_every_survey_sms_is_one_gsm7_message_with_the_reply_hint(
    metric: Metric, scale: str, locale: str, question: str
) -> None:
    text = {
        "short": QUESTIONS[locale],
        "limit": ("Évaluez-vous " * 20)[:SURVEY_QUESTION_UNITS].strip(),
        "long": LONG_QUESTION * 2,
    }[question]
    sms = render_survey_sms(locale=locale, metric=metric.value, scale=scale, question=text)
    size = units(sms)
    assert size is not None and size <= SMS_UNITS, sms
    assert "STOP" in sms and "\n" not in sms
    low, high = SCALES[(metric, scale)].low, SCALES[(metric, scale)].high
    hint = {"en": f"Reply {low}-{high}", "fr": f"Répondez de {low} à {high}"}[locale]
    if scale == "yes-no":
        hint = {"en": "Reply YES or NO", "fr": "Répondez OUI ou NON"}[locale]
    assert hint in sms
    if question != "long":  # a question within the definitions' limit is never shortened
        assert sms.startswith(to_gsm7(text)) and "..." not in sms


@pytest.mark.parametrize(
    ("text", "gsm", "size"),
    [
        ("Répondez de 1 à 5", "Répondez de 1 à 5", 17),  # é and à are in the 7-bit alphabet
        ("Êtes-vous reçu ?", "Etes-vous recu ?", 16),
        ("Qu\u2019aurions-nous \u00abmieux\u00bb fait\u2026", 'Qu\'aurions-nous "mieux" fait...', 31),
        ("Prix 5 €", "Prix 5 €", 9),  # the euro sign is an extension character: two units
        ("Merci 😀", "Merci ?", 7),
    ],
)
def test_gsm7_transliteration_and_units(text: str, gsm: str, size: int) -> None:
    assert to_gsm7(text) == gsm and units(to_gsm7(text)) == size


def test_units_say_when_a_text_needs_ucs2() -> None:
    assert units("Êtes-vous") is None and units("Etes-vous") == 9
