"""Every template the contract names renders in English and French from the documented context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.notifier.templating import LOCALES, TEMPLATE_DIR, TEMPLATE_NAMES, Templates

INTERNAL = {"csm_alert", "sla_escalation", "support_callback", "segment_alert", "theme_alert"}
CUSTOMER = set(TEMPLATE_NAMES) - INTERNAL

FULL: dict[str, Any] = {
    "rating": {
        "rating_id": "r-42",
        "metric": "csat",
        "scale": "1-5",
        "score": 2,
        "sentiment": "negative",
        "touchpoint": "store_visit",
        "comment": "Delivery <late> & staff rude",
        "segment": {"store": "paris-1", "channel": "store"},
        "occurred_at": "2026-11-23T10:00:00+00:00",
        "themes": ["delivery_time", "staff"],
    },
    "customer": {
        "id": "cus-42",
        "email": "lea@example.com",
        "phone": "+33612345678",
        "tier": "gold",
        "account_id": "acc-9",
        "account_value": 80000,
    },
    "alert": {"id": "al-7", "due_at": "2026-11-24T10:00:00+00:00", "priority": "high", "ack_url": "https://a/ack"},
    "segment": {"key": "store=paris-1", "attributes": {"store": "paris-1"}, "score": 64.25, "previous": 81.5,
                "window": "9d", "metric": "csat", "reason": "drift_drop",
                "drift": {"status": "drop_detected", "day": "2026-11-22", "since": "2026-11-14",
                          "drop": 17.25, "drop_ci_low": 11.02, "drop_ci_high": 23.1, "before": 81.5,
                          "after": 64.25, "answers_before": 2730, "answers_after": 270, "evidence": 8.31,
                          "evidence_threshold": 8.203, "watched_drop": 10.0, "min_drop": 10.0,
                          "months_per_false_alarm": 120.0, "message": "CSAT dropped by 17.2 points"}},
    "survey": {"url": "https://s.example/q/42"},
    "unsubscribe_url": "https://n.example/u/TOKEN",
}  # fmt: skip

#: What actions sends when optional parts are missing: every documented key, values unknown.
SPARSE: dict[str, Any] = {
    "rating": {"rating_id": "r-1", "metric": "nps", "scale": "0-10", "score": 3, "sentiment": "negative",
               "touchpoint": None, "comment": None, "segment": {},
               "occurred_at": "2026-11-23T10:00:00+00:00"},
    "customer": {"id": "cus-1", "email": None, "phone": None, "tier": None, "account_id": None,
                 "account_value": None},
}  # fmt: skip


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_contract_template_ships_in_both_locales(name: str, locale: str) -> None:
    assert (TEMPLATE_DIR / locale / f"{name}.txt").is_file()


@pytest.mark.parametrize("context", [FULL, SPARSE], ids=["full", "sparse"])
@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_renders_as_an_email_without_leaks(name: str, locale: str, context: dict[str, Any]) -> None:
    out = Templates().render(name, locale, context, channel="email")
    assert out.locale == locale and out.variant is None
    assert out.subject and "\n" not in out.subject and len(out.subject) <= 200
    assert out.body.strip()
    for leak in ("None", "Undefined", "{{", "{%", "[]", "{}"):
        assert leak not in out.subject + out.body, f"{leak!r} in {name}/{locale}"
    if context is FULL and name in INTERNAL:
        # Who or what the alert is about is always in it.
        assert ("store=paris-1" if name == "segment_alert" else "cus-42") in out.subject + out.body


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(CUSTOMER))
def test_customer_emails_carry_the_unsubscribe_link_only_when_given(name: str, locale: str) -> None:
    with_link = Templates().render(name, locale, FULL)
    assert "https://n.example/u/TOKEN" in with_link.body
    without = Templates().render(name, locale, {k: v for k, v in FULL.items() if k != "unsubscribe_url"})
    assert "/u/" not in without.body and "--" not in without.body


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(CUSTOMER))
def test_customer_sms_are_short_and_say_how_to_stop(name: str, locale: str) -> None:
    out = Templates().render(name, locale, FULL, channel="sms")
    assert out.variant == "sms" and out.subject is None
    assert "STOP" in out.body and "\n" not in out.body
    assert len(out.body) <= 320  # at most two concatenated SMS segments


def test_internal_alerts_show_the_interaction_context() -> None:
    out = Templates().render("csm_alert", "en", FULL)
    assert out.subject == "[CSAT alert, high priority] gold cus-42 rated 2 (CSAT 1-5)"
    for fact in (
        "lea@example.com",
        "+33612345678",
        "store: paris-1",
        "Themes: delivery_time, staff",
        "Comment: Delivery <late> & staff rude",
        "https://a/ack",
        "2026-11-24T10:00:00+00:00",
    ):
        assert fact in out.body  # fmt: skip
    segment = Templates().render("segment_alert", "fr", FULL)
    assert segment.subject == "[Alerte segment CSAT] store=paris-1 : 64.2 (contre 81.5)"


@pytest.mark.parametrize(
    ("locale", "facts"),
    [
        ("en", ["17.2 points (95 % interval 11.0 to 23.1), since 2026-11-14", "on 270 answers",
                "every 120 months"]),
        ("fr", ["17.2 points (intervalle à 95 % de 11.0 à 23.1), depuis le 2026-11-14", "sur 270 réponses",
                "tous les 120 mois"]),
    ],
)  # fmt: skip
def test_a_drift_alert_says_how_much_since_when_and_how_sure(locale: str, facts: list[str]) -> None:
    out = Templates().render("segment_alert", locale, FULL)
    for fact in facts:
        assert fact in out.body
    ces = {**FULL, "segment": {**FULL["segment"], "metric": "ces"}}
    assert ("points of ease" if locale == "en" else "points de facilité") in Templates().render(
        "segment_alert", locale, ces
    ).body
    # A threshold alert has no drift part.
    below = {**FULL, "segment": {**FULL["segment"], "reason": "below_threshold", "drift": None}}
    plain = Templates().render("segment_alert", locale, below).body
    assert "2026-11-14" not in plain and "95 %" not in plain


def test_review_invitations_go_to_everyone_with_wording_by_score() -> None:
    """No review gating: the invitation exists for every sentiment; only the wording changes."""
    bodies = {}
    for sentiment in ("negative", "neutral", "positive"):
        ctx = {**FULL, "rating": {**FULL["rating"], "sentiment": sentiment}}
        out = Templates().render("review_invite", "en", ctx)
        assert "https://s.example/q/42" in out.body and "whatever their rating" in out.body
        bodies[sentiment] = out.body
    assert len(set(bodies.values())) == 3


def test_a_french_sms_falls_back_to_french_text_not_english(tmp_path: Path) -> None:
    (tmp_path / "fr").mkdir()
    (tmp_path / "en").mkdir()
    (tmp_path / "fr" / "hello.txt").write_text("Subject: Bonjour\nBonjour {{ customer.id }}")
    (tmp_path / "en" / "hello.sms.txt").write_text("Hi {{ customer.id }}")
    out = Templates(tmp_path).render("hello", "fr-CA", {"customer": {"id": "c"}}, channel="sms")
    assert (out.locale, out.variant, out.body) == ("fr", None, "Bonjour c")
    assert Templates(tmp_path).render("hello", "de", {"customer": {"id": "c"}}, channel="sms").body == "Hi c"
