"""Firing timers: SLA escalation only while open, support callback only without an answer, delayed sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from services.actions.engine import Policy
from services.actions.facts import CustomerContext
from services.actions.timers import AlertState, DueTimer, fire_escalation, fire_no_answer, fire_send

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
POLICY = Policy(csm_managers={"ana@example.com": "boss@example.com"}, escalation_email="esc@example.com")


def alert(status: str = "open", owner: str = "ana@example.com") -> AlertState:
    return AlertState(
        alert_id="al-1",
        rule_id="strategic-account-alert",
        status=status,
        owner_email=owner,
        owner_name="Ana",
        priority="high",
        due_at=NOW - timedelta(seconds=1),
        rating_id="r-1",
        customer_id="cus-1",
        context={"rating": {"score": 1}, "customer": {"id": "cus-1"}},
    )


TIMER = DueTimer("t-1", "sla_escalation", "al-1", "cus-1", NOW, {"alert_id": "al-1", "rule_id": "x"})


def test_open_alert_escalates_to_the_owners_manager() -> None:
    fired = fire_escalation(TIMER, alert=alert(), now=NOW, policy=POLICY)
    assert fired.outcome == "escalated" and fired.escalated_alert == "al-1"
    (note,) = fired.notifications
    assert note.recipient.email == "boss@example.com" and note.template == "sla_escalation"
    assert note.transactional and note.context["alert"]["owner"] == "ana@example.com"
    again = fire_escalation(TIMER, alert=alert(), now=NOW + timedelta(minutes=1), policy=POLICY)
    assert again.notifications[0].notification_id == note.notification_id


def test_unmapped_owner_escalates_to_the_escalation_address() -> None:
    fired = fire_escalation(TIMER, alert=alert(owner="zoe@example.com"), now=NOW, policy=POLICY)
    assert fired.notifications[0].recipient.email == "esc@example.com"


def test_acknowledged_or_resolved_alert_does_not_escalate() -> None:
    for status in ("acknowledged", "resolved"):
        fired = fire_escalation(TIMER, alert=alert(status), now=NOW, policy=POLICY)
        assert fired.outcome == f"skipped_{status}" and fired.notifications == ()
    assert fire_escalation(TIMER, alert=None, now=NOW, policy=POLICY).outcome == "skipped_missing_alert"


NO_ANSWER = DueTimer(
    "t-2",
    "resurvey_no_answer",
    "survey-1",
    "cus-1",
    NOW,
    {"rule_id": "low-score-resurvey", "rating_id": "r-1", "to": "support@example.com", "context": {"x": 1}},
)


def test_no_answer_asks_support_to_call() -> None:
    fired = fire_no_answer(NO_ANSWER, answered=False, now=NOW, policy=POLICY)
    (note,) = fired.notifications
    assert (note.template, note.recipient.email, note.transactional) == (
        "support_callback",
        "support@example.com",
        True,
    )
    assert note.context == {"x": 1}


def test_an_answer_cancels_the_callback() -> None:
    fired = fire_no_answer(NO_ANSWER, answered=True, now=NOW, policy=POLICY)
    assert fired.outcome == "skipped_answered" and fired.notifications == ()


def send_timer(**extra: Any) -> DueTimer:
    payload = {
        "rule_id": "promoter-thank-you",
        "action": "referral_invite",
        "index": 1,
        "rating_id": "r-9",
        "customer_id": "cus-1",
        "locale": "fr",
        "template": "referral_invite",
        "channel": "email",
        "context": {"customer": {"id": "cus-1", "email": "old@example.com"}},
        **extra,
    }
    return DueTimer("t-3", "send", "r-9", "cus-1", NOW, payload)


def test_delayed_message_uses_the_fresh_address_and_respects_the_cap() -> None:
    ctx = CustomerContext(customer_id="cus-1", email="new@example.com")
    fired = fire_send(send_timer(), ctx=ctx, sent_24h=0, enrolment_status=None, now=NOW, policy=POLICY)
    (note,) = fired.notifications
    assert note.recipient.email == "new@example.com" and note.locale == "fr" and not note.transactional
    assert fired.customer_facing
    none = fire_send(send_timer(), ctx=None, sent_24h=0, enrolment_status=None, now=NOW, policy=POLICY)
    assert none.notifications[0].recipient.email == "old@example.com"
    capped = fire_send(send_timer(), ctx=ctx, sent_24h=3, enrolment_status=None, now=NOW, policy=POLICY)
    assert capped.outcome == "skipped_daily_cap"


def test_delayed_message_honours_opt_out_and_withdrawn_consent() -> None:
    out = CustomerContext(customer_id="cus-1", opted_out=True, email="a@example.com")
    assert fire_send(
        send_timer(), ctx=out, sent_24h=0, enrolment_status=None, now=NOW, policy=POLICY
    ).outcome == ("skipped_opted_out")
    withdrawn = CustomerContext(customer_id="cus-1", consent={"contact": False}, email="a@example.com")
    fired = fire_send(send_timer(), ctx=withdrawn, sent_24h=0, enrolment_status=None, now=NOW, policy=POLICY)
    assert fired.outcome == "skipped_no_consent"


def test_nurture_step_stops_with_the_sequence_and_completes_it_on_the_last_step() -> None:
    last = send_timer(
        action="nurture", template="nurture_education", sequence={"name": "education", "step": 3, "steps": 3}
    )
    stopped = fire_send(last, ctx=None, sent_24h=0, enrolment_status="stopped", now=NOW, policy=POLICY)
    assert stopped.outcome == "skipped_sequence_stopped" and stopped.completes_sequence == "education"
    sent = fire_send(last, ctx=None, sent_24h=0, enrolment_status="active", now=NOW, policy=POLICY)
    assert sent.outcome == "sent" and sent.completes_sequence == "education"
    assert sent.notifications[0].context["sequence"] == {"name": "education", "step": 3, "steps": 3}


def test_delayed_resurvey_arms_the_no_answer_timer_when_it_is_sent() -> None:
    t = send_timer(action="resurvey", template="resurvey_open_question", follow_up_after=3600.0)
    fired = fire_send(t, ctx=None, sent_24h=0, enrolment_status=None, now=NOW, policy=POLICY)
    (timer,) = fired.timers
    assert timer.kind == "resurvey_no_answer" and timer.due_at == NOW + timedelta(hours=1)
    assert fired.notifications[0].context["survey"]["id"] == timer.ref
