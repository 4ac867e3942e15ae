"""What a due timer does when it fires: escalate an SLA, ask support to call, send a delayed message. Pure.

The scheduler claims a timer, gathers the state it needs (the alert, the customer's context, the
messages already sent today) and calls one of these; the result is written and published in the same
transaction that marks the timer fired, with ids derived from the timer's id, so a replay after a
crash produces the same messages and the notifier drops the duplicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.actions.engine import Policy, TimerDraft, customer_message
from services.actions.facts import CustomerContext
from services.actions.rules import derived_id
from shared.events import Channel, NotificationRequested, Recipient

SLA_ESCALATION = "sla_escalation"
RESURVEY_NO_ANSWER = "resurvey_no_answer"
SEND = "send"


@dataclass(frozen=True, slots=True)
class DueTimer:
    timer_id: str
    kind: str
    ref: str | None
    customer_id: str | None
    due_at: datetime
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AlertState:
    alert_id: str
    rule_id: str
    status: str
    owner_email: str
    owner_name: str | None
    priority: str
    due_at: datetime | None
    rating_id: str | None
    customer_id: str | None
    context: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Fired:
    """What firing produced; ``outcome`` is ``sent``, ``escalated`` or ``skipped_<why>``."""

    outcome: str
    rule_id: str
    action: str
    customer_facing: bool = False
    notifications: tuple[NotificationRequested, ...] = ()
    timers: tuple[TimerDraft, ...] = ()
    escalated_alert: str | None = None
    completes_sequence: str | None = None

    @property
    def notification(self) -> NotificationRequested | None:
        return self.notifications[0] if self.notifications else None


def fire_escalation(timer: DueTimer, *, alert: AlertState | None, now: datetime, policy: Policy) -> Fired:
    """An alert still open when its SLA ran out goes to the owner's manager (or the escalation address)."""
    rule_id = str(timer.payload.get("rule_id", ""))
    if alert is None:
        return Fired("skipped_missing_alert", rule_id, SLA_ESCALATION)
    if alert.status != "open":
        return Fired(f"skipped_{alert.status}", alert.rule_id, SLA_ESCALATION)
    manager = policy.manager_of(alert.owner_email)
    context = {
        **dict(alert.context),
        "alert": {
            "id": alert.alert_id,
            "due_at": alert.due_at.isoformat() if alert.due_at else None,
            "priority": alert.priority,
            "owner": alert.owner_email,
            "owner_name": alert.owner_name,
            "status": alert.status,
            **(
                {"ack_url": policy.alert_url_template.format(alert_id=alert.alert_id)}
                if policy.alert_url_template
                else {}
            ),
        },
    }
    note = NotificationRequested(
        notification_id=derived_id("escalation", alert.alert_id),
        rule_id=alert.rule_id,
        action=SLA_ESCALATION,
        channel=Channel.EMAIL,
        recipient=Recipient(email=manager),
        template="sla_escalation",
        locale=str(timer.payload.get("locale") or policy.default_locale),
        customer_id=alert.customer_id,
        rating_id=alert.rating_id,
        priority="high",
        transactional=True,
        context=context,
        requested_at=now,
    )
    return Fired(
        "escalated", alert.rule_id, SLA_ESCALATION, notifications=(note,), escalated_alert=alert.alert_id
    )


def fire_no_answer(timer: DueTimer, *, answered: bool, now: datetime, policy: Policy) -> Fired:
    """No answer to the re-survey in time: support is asked to call the customer."""
    p = timer.payload
    rule_id = str(p.get("rule_id", ""))
    if answered:
        return Fired("skipped_answered", rule_id, "support_callback")
    note = NotificationRequested(
        notification_id=derived_id("callback", timer.timer_id),
        rule_id=rule_id,
        action="support_callback",
        channel=Channel.EMAIL,
        recipient=Recipient(email=str(p.get("to") or policy.support_email)),
        template="support_callback",
        locale=str(p.get("locale") or policy.default_locale),
        customer_id=timer.customer_id,
        rating_id=p.get("rating_id"),
        priority="high",
        transactional=True,
        context=dict(p.get("context") or {}),
        requested_at=now,
    )
    return Fired("sent", rule_id, "support_callback", notifications=(note,))


def fire_send(
    timer: DueTimer,
    *,
    ctx: CustomerContext | None,
    sent_24h: int,
    enrolment_status: str | None,
    now: datetime,
    policy: Policy,
) -> Fired:
    """A delayed message or a nurture step: opt-out, withdrawn consent and the daily cap are checked now."""
    p = timer.payload
    rule_id, action = str(p["rule_id"]), str(p["action"])
    sequence: Mapping[str, Any] = p.get("sequence") or {}
    last_step = bool(sequence) and int(sequence["step"]) >= int(sequence["steps"])
    done = str(sequence["name"]) if last_step else None

    def skip(why: str) -> Fired:
        return Fired(f"skipped_{why}", rule_id, action, customer_facing=True, completes_sequence=done)

    if ctx is not None and ctx.opted_out:
        return skip("opted_out")
    kind = "review" if action == "review_invite" else "contact"
    if ctx is not None and ctx.consent and ctx.consent.get(kind) is False:
        return skip("no_consent")
    if sequence and enrolment_status not in (None, "active"):
        return skip(f"sequence_{enrolment_status}")
    if sent_24h >= policy.daily_cap:
        return skip("daily_cap")
    made = customer_message(
        nid=derived_id("send", timer.timer_id),
        payload=p,
        ctx=ctx,
        rating=None,
        now=now,
        policy=policy,
        survey_key=(rule_id, str(p.get("rating_id")), int(p.get("index", 0))),
    )
    if made is None:
        return skip("no_recipient")
    return Fired(
        "sent",
        rule_id,
        action,
        customer_facing=True,
        notifications=(made.note,),
        timers=made.timers,
        completes_sequence=done,
    )
