"""Survey definitions: the default file loads, every mistake is named with its survey and field."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from services.actions.surveys.definitions import (
    StopCondition,
    SurveyChannel,
    SurveyFileError,
    load_surveys_file,
    load_surveys_text,
    parse_surveys,
)

VALID: dict[str, Any] = {
    "id": "post-delivery-csat",
    "on": ["order.delivered"],
    "question": {"en": "How was your delivery?", "fr": "Votre livraison ?"},
}


def survey(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def test_the_default_file_loads_with_a_post_delivery_csat_survey() -> None:
    surveys = load_surveys_file()
    first = surveys.surveys[0]
    assert first.id == "post-delivery-csat" and first.enabled and first.follows("order.delivered")
    assert (first.metric.value, first.scale) == ("csat", "1-5")
    assert first.channels == [SurveyChannel.EMAIL, SurveyChannel.SMS]
    assert first.reminder is not None and first.reminder.after < first.answer_window
    assert set(first.stop_on) == set(StopCondition)


def test_defaults_of_a_minimal_survey() -> None:
    (s,) = parse_surveys({"surveys": [VALID]}).surveys
    assert (s.metric.value, s.scale, s.channels, s.sampling, s.recontact_days) == (
        "csat",
        "1-5",
        ["email"],
        100,
        30,
    )
    assert (s.delay, s.answer_window, s.reminder, s.quiet) == (timedelta(0), timedelta(days=7), None, None)
    assert s.reclick_window == timedelta(minutes=15) and s.follow_up is None


@pytest.mark.parametrize(
    ("patterns", "kind", "follows"),
    [
        (["order.delivered"], "order.delivered", True),
        (["order.delivered"], "order.returned", False),
        (["ticket.*"], "ticket.solved", True),
        (["ticket.*"], "tickets.solved", False),
        (["*"], "store.visit", True),
        (["store.visit", "chat.closed"], "chat.closed", True),
    ],
)
def test_which_interactions_a_survey_follows(patterns: list[str], kind: str, follows: bool) -> None:
    (s,) = parse_surveys({"surveys": [survey(on=patterns)]}).surveys
    assert s.follows(kind) is follows


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"id": "Post Delivery"}, "id", "pattern"),
        ({"on": []}, "on", "at least 1"),
        ({"on": ["Order Delivered"]}, "on.0", "not an interaction type"),
        ({"when": {"attributes.agent_replied": True, "sentimnt": "x"}}, "when.sentimnt", "unknown fact"),
        ({"when": {"account.value": {"gte": "a lot"}}}, "when.account.value.gte", "needs a number"),
        ({"metric": "stars"}, "metric", "Input should be"),
        ({"scale": "1-4"}, "scale", "not defined for csat"),
        ({"metric": "nps", "scale": "1-5"}, "scale", "not defined for nps"),
        ({"question": {"en": "How was it?"}}, "question.fr", "required in every locale"),
        ({"question": {"en": "Hi?", "fr": "  "}}, "question.fr", "required in every locale"),
        ({"question": {"en": "Hi?", "fr": "Oui ?", "de": "Ja?"}}, "question.de", "unknown locale"),
        ({"question": {"en": "x" * 201, "fr": "Oui ?"}}, "question.en", "at most 200"),
        ({"follow_up": {"fr": "Pourquoi ?"}}, "follow_up.en", "required in every locale"),
        ({"channels": ["email", "email"]}, "channels", "each channel once"),
        ({"channels": ["fax"]}, "channels.0", "Input should be"),
        (
            {
                "channels": ["sms"],
                "question": {"en": "How was it?", "fr": "Êtes-vous " + "très " * 20 + "satisfait ?"},
            },
            "question.fr",
            "too long for one SMS",
        ),
        ({"sampling": 0}, "sampling", "greater than 0"),
        ({"sampling": 101}, "sampling", "less than or equal to 100"),
        ({"recontact_days": -1}, "recontact_days", "greater than or equal to 0"),
        ({"delay": "2 hours"}, "delay", "must look like"),
        ({"quiet_hours": "9pm-8am"}, "quiet_hours", "must look like 21:00-08:00"),
        ({"answer_window": "30s"}, "answer_window", "1m to 90d"),
        ({"answer_window": "91d"}, "answer_window", "1m to 90d"),
        ({"answer_window": "7d", "reminder": {"after": "7d"}}, "reminder.after", "before answers close"),
        ({"reminder": {"after": "0s"}}, "reminder.after", "some time after"),
        ({"reminder": {"every": "1d"}}, "reminder.every", "Extra inputs"),
        ({"stop_on": ["answered"]}, "stop_on", "cannot be removed"),
        ({"stop_on": ["answered", "erased"]}, "stop_on", "opted_out cannot be removed"),
        ({"reclick_window": "2d"}, "reclick_window", "0 to 24h"),
        ({"colour": "blue"}, "colour", "Extra inputs"),
    ],
)
def test_mistakes_name_the_survey_and_field(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(SurveyFileError) as caught:
        parse_surveys({"surveys": [survey(**changes)]}, origin="surveys.yaml")
    errors = caught.value.errors
    assert any(e.field == field and message in e.message for e in errors), [str(e) for e in errors]
    assert all(e.survey == "post-delivery-csat" for e in errors if "id" not in changes)


def test_file_level_mistakes() -> None:
    with pytest.raises(SurveyFileError, match="a mapping with `surveys:`"):
        parse_surveys(["not", "a", "mapping"])
    with pytest.raises(SurveyFileError, match="not valid YAML"):
        load_surveys_text("surveys: [")
    with pytest.raises(SurveyFileError) as caught:
        parse_surveys({"surveys": [VALID, VALID]})
    assert (
        str(caught.value.errors[0])
        == "survey post-delivery-csat: id: survey id 'post-delivery-csat' is used twice (survey #1)"
    )
    with pytest.raises(SurveyFileError) as unnamed:
        parse_surveys({"surveys": [survey(id=None)]})
    assert unnamed.value.errors[0].survey == "#0"


def test_a_french_question_fits_an_sms_once_accents_are_simplified() -> None:
    text = "Êtes-vous satisfait de la qualité de notre échange ? Répondez de 1 à 5, ça nous aide beaucoup."
    ok = survey(channels=["sms"], question={"en": "How was our exchange?", "fr": text[:89]})
    assert parse_surveys({"surveys": [ok]}).surveys[0].channels == [SurveyChannel.SMS]
