"""No personal data in logs; templates render per locale with English fallback."""

from __future__ import annotations

import json

import pytest

from services.notifier.templating import TemplateMissing, Templates
from shared.logs import scrub


@pytest.mark.parametrize(
    ("line", "leak"),
    [
        ("sent to ana.perez@example.com ok", "ana.perez@example.com"),
        ("calling +33 6 12 34 56 78 now", "+33 6 12 34 56 78"),
        ("sms +14155550123", "+14155550123"),
        ("GET /r?token=abc.def.ghi&x=1", "abc.def.ghi"),
        ("Authorization: Bearer sk_live_1234567890abcdef", "sk_live_1234567890abcdef"),
    ],
)
def test_scrub_removes_personal_data(line: str, leak: str) -> None:
    assert leak not in scrub(line)


def test_scrub_keeps_ordinary_numbers() -> None:
    assert (
        scrub("processed 1200 records in 35 ms on partition 3")
        == "processed 1200 records in 35 ms on partition 3"
    )


CTX = {
    "rating": {
        "score": 1,
        "scale": "1-5",
        "metric": "csat",
        "sentiment": "negative",
        "rating_id": "r1",
        "segment": {"store": "paris-1"},
        "touchpoint": "support_chat",
        "comment": None,
        "occurred_at": "2026-11-23T10:00:00+00:00",
    },
    "customer": {"id": "cus-1", "email": "a@example.com", "tier": "strategic"},
}


def test_csm_alert_english_and_french() -> None:
    t = Templates()
    en = t.render("csm_alert", "en", CTX)
    assert en.subject is not None and "cus-1" in en.subject and "rated 1" in en.subject
    assert "a@example.com" in en.body and "store: paris-1" in en.body
    fr = t.render("csm_alert", "fr-FR", CTX)
    assert fr.locale == "fr" and fr.subject is not None and fr.subject.startswith("[Alerte CSAT]")


def test_unknown_locale_falls_back_to_english() -> None:
    assert Templates().render("thank_you", "de", CTX).locale == "en"


def test_missing_template() -> None:
    with pytest.raises(TemplateMissing):
        Templates().render("nope", "en", CTX)


@pytest.mark.parametrize(
    "line",
    [
        "connected to 127.0.0.1 port 5432",
        "window from 2026-11-23 to 2026-11-24",
        "offset 12345678 of partition 3",
        "version 1.2.3.4",
    ],
)
def test_scrub_leaves_addresses_dates_and_offsets(line: str) -> None:
    assert scrub(line) == line


@pytest.mark.parametrize("phone", ["06 12 34 56 78", "06.12.34.56.78", "+1 (415) 555-0123", "+33612345678"])
def test_scrub_catches_phone_formats(phone: str) -> None:
    assert phone not in scrub(f"call {phone} now")


def test_tracebacks_lose_statement_parameters_and_quoted_values(capsys: pytest.CaptureFixture[str]) -> None:
    """A traceback is formatted after the event's fields were scrubbed: the rendered line is scrubbed
    again, so a driver's or SQLAlchemy's quoting of a value never reaches the log. uvicorn's own logging
    config, which `uvicorn app:app` applies before it imports the app, does not take its records past
    the pipeline."""
    import logging
    import logging.config

    from uvicorn.config import LOGGING_CONFIG

    from shared.logs import configure_logging

    logging.config.dictConfig(LOGGING_CONFIG)  # uvicorn's handler on "uvicorn", not propagating
    configure_logging(service="t", fmt="json")
    # what str(DBAPIError) looks like: the driver's message, the statement, its parameters
    message = (
        "(sqlalchemy.dialects.postgresql.asyncpg.Error) <class 'asyncpg.exceptions.DataError'>: "
        "invalid input for query argument $1: 'Leakmarker plan' ('str' object cannot be interpreted)\n"
        "[SQL: INSERT INTO t VALUES ($1)]\n[parameters: ('Leakmarker note',)]\n(Background ...)"
    )
    try:
        raise RuntimeError(message)
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    err = capsys.readouterr().err
    assert "Exception in ASGI application" in err and "[parameters: redacted]" in err
    assert "query argument $1: [redacted]" in err and "Leakmarker" not in err
    assert json.loads(err.strip())["event"] == "Exception in ASGI application"  # one JSON line
