"""Turns a rating (or a segment alert), context and history into decisions: messages, alerts, timers. Pure.

Nothing here reads a clock, a database or a broker: the caller passes ``now``, the customer's stored
context, the history and the fatigue state, and writes what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from services.actions.facts import (
    CustomerContext,
    History,
    build_facts,
    consent_of,
    rating_context,
    segment_facts,
)
from services.actions.rules import (
    ActionSpec,
    ActionType,
    Rule,
    RuleSet,
    derived_id,
    evaluate,
    notification_id,
)
from services.actions.verbatims import Analysis
from shared.events import Channel, NotificationRequested, RatingSubmitted, Recipient, SegmentAlert
from shared.security.urls import fill_url_template


@dataclass(frozen=True, slots=True)
class Policy:
    """Deployment settings the decisions need (addresses, caps, URL templates)."""

    default_csm_email: str = "csm@example.com"
    default_locale: str = "en"
    support_email: str = "support@example.com"
    escalation_email: str = "escalation@example.com"
    csm_managers: Mapping[str, str] = field(default_factory=dict)
    daily_cap: int = 3
    resurvey_follow_up: timedelta = timedelta(hours=48)
    survey_url_template: str | None = None
    alert_url_template: str | None = None
    theme_owners: Mapping[str, str] = field(default_factory=dict)
    theme_default_owner: str | None = None
    segment_owners: Mapping[str, str] = field(default_factory=dict)
    segment_default_owner: str | None = None

    def manager_of(self, owner: str) -> str:
        return self.csm_managers.get(owner.lower(), self.escalation_email)

    def segment_owner(self, attributes: Mapping[str, str]) -> str | None:
        """The first owner configured for one of the segment's ``dimension=value`` (or ``dimension=*``)."""
        for dim, value in attributes.items():
            owner = self.segment_owners.get(f"{dim}={value}")
            if owner:
                return owner
        for dim in attributes:
            owner = self.segment_owners.get(f"{dim}=*")
            if owner:
                return owner
        return self.segment_default_owner


@dataclass(frozen=True, slots=True)
class Fatigue:
    """What the customer already received: per-rule last fire, customer messages in 24 h, sequences."""

    last_fired: Mapping[str, datetime] = field(default_factory=dict)
    sent_24h: int = 0
    active_sequences: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class TimerDraft:
    timer_id: str
    kind: str  # "sla_escalation" | "resurvey_no_answer" | "send"
    due_at: datetime
    customer_id: str | None
    ref: str | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AlertDraft:
    alert_id: str
    rule_id: str
    rating_id: str | None
    customer_id: str | None
    owner_email: str
    owner_name: str | None
    priority: str
    due_at: datetime | None
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EnrolmentDraft:
    customer_id: str
    sequence: str
    rule_id: str
    rating_id: str | None
    steps: int
    ends_at: datetime


@dataclass(frozen=True, slots=True)
class Decision:
    rule_id: str
    action: ActionType
    index: int
    notifications: tuple[NotificationRequested, ...] = ()
    skipped: str | None = None
    customer_facing: bool = False
    alert: AlertDraft | None = None
    timers: tuple[TimerDraft, ...] = ()
    enrolment: EnrolmentDraft | None = None

    @property
    def notification(self) -> NotificationRequested | None:
        return self.notifications[0] if self.notifications else None

    @property
    def outcome(self) -> str:
        if self.skipped:
            return f"skipped_{self.skipped}"
        return "notified" if self.notifications else "scheduled"


# ---- decisions on a rating ------------------------------------------------------------------------
@dataclass(slots=True)
class _Run:
    """Per-rating state while the rules are applied: the cap counts what this rating already sent."""

    rating: RatingSubmitted
    ctx: CustomerContext | None
    analysis: Analysis | None
    fatigue: Fatigue
    now: datetime
    policy: Policy
    locale: str
    sent: int


def decide(
    *,
    rules: RuleSet,
    rating: RatingSubmitted,
    ctx: CustomerContext | None,
    history: History,
    now: datetime,
    policy: Policy | None = None,
    fatigue: Fatigue | None = None,
    analysis: Analysis | None = None,
    health: Mapping[str, Any] | None = None,
) -> list[Decision]:
    """Every action the rules call for, with the reason an action is skipped (cooldown, opt-out...)."""
    pol = policy or Policy()
    fat = fatigue or Fatigue()
    locale = ((ctx.locale if ctx else None) or rating.customer.locale or pol.default_locale).split("-")[0]
    run = _Run(rating, ctx, analysis, fat, now, pol, locale.lower(), fat.sent_24h)
    facts = build_facts(rating, ctx, history, analysis, health)
    decisions: list[Decision] = []
    for rule in evaluate(rules, facts, on="rating"):
        cooled = _in_cooldown(rule, fat.last_fired, now)
        for index, spec in enumerate(rule.actions):
            if spec.customer_facing:
                decisions.append(_customer_action(run, rules, rule, index, spec, cooled=cooled))
            else:
                decisions.append(_internal_action(run, rule, index, spec))
    return decisions


def _in_cooldown(rule: Rule, last_fired: Mapping[str, datetime], now: datetime) -> bool:
    if rule.cooldown <= timedelta(0):
        return False
    last = last_fired.get(rule.id)
    return last is not None and now - last < rule.cooldown


def _note(
    *,
    nid: str,
    rule_id: str,
    action: ActionType | str,
    channel: Channel,
    recipient: Recipient,
    template: str,
    locale: str,
    customer_id: str | None,
    rating_id: str | None,
    priority: str,
    transactional: bool,
    context: dict[str, Any],
    now: datetime,
    source: str | None = None,
) -> NotificationRequested:
    return NotificationRequested(
        notification_id=nid,
        rule_id=rule_id,
        action=str(action),
        channel=channel,
        recipient=recipient,
        template=template,
        locale=locale,
        customer_id=customer_id,
        rating_id=rating_id,
        priority=priority,
        source=source,
        transactional=transactional,
        context=context,
        requested_at=now,
    )


def _internal_note(
    run: _Run,
    rule: Rule,
    spec: ActionSpec,
    *,
    nid: str,
    channel: Channel,
    recipient: Recipient,
    context: dict[str, Any],
) -> NotificationRequested:
    assert spec.template is not None
    return _note(
        nid=nid,
        rule_id=rule.id,
        action=spec.type,
        channel=channel,
        recipient=recipient,
        template=spec.template,
        locale=run.locale,
        customer_id=run.rating.customer.id,
        rating_id=run.rating.rating_id,
        priority=spec.priority,
        transactional=True,
        context=context,
        now=run.now,
        source=run.rating.source,
    )


#: Actions about one customer: they need the customer id to be a fact, not a browser's claim.
PER_CUSTOMER = frozenset({ActionType.CSM_ALERT, ActionType.SUPPORT_CALLBACK})


def _internal_action(run: _Run, rule: Rule, index: int, spec: ActionSpec) -> Decision:
    """Staff hear about the rating (CSM, chat, webhook, support, theme owners): no opt-out or cap applies.

    A rating whose customer is only claimed (a publishable key without the server's proof) alerts no
    one about that customer: anyone can type any id into a public widget. It still reaches the teams
    that own its themes and any chat or webhook a rule names.
    """
    if spec.type in PER_CUSTOMER and not run.rating.customer_verified:
        return Decision(rule.id, spec.type, index, skipped="unverified_customer")
    base = rating_context(run.rating, run.ctx, run.analysis)
    nid = notification_id(rule.id, run.rating.rating_id, index)
    if spec.type is ActionType.CSM_ALERT:
        return _csm_alert(run, rule, index, spec, base=base, nid=nid)
    if spec.type in (ActionType.SLACK, ActionType.WEBHOOK):
        if not spec.to:
            return Decision(rule.id, spec.type, index, skipped="no_recipient")
        channel = Channel.SLACK if spec.type is ActionType.SLACK else Channel.WEBHOOK
        posted = _internal_note(
            run, rule, spec, nid=nid, channel=channel, recipient=Recipient(url=spec.to), context=base
        )
        return Decision(rule.id, spec.type, index, (posted,))
    if spec.type is ActionType.SUPPORT_CALLBACK:
        to = Recipient(email=spec.to or run.policy.support_email)
        asked = _internal_note(run, rule, spec, nid=nid, channel=Channel.EMAIL, recipient=to, context=base)
        return Decision(rule.id, spec.type, index, (asked,))
    if spec.type is ActionType.THEME_ALERT:
        return _theme_alert(run, rule, index, spec, base)
    return Decision(rule.id, spec.type, index, skipped="unsupported")


def _csm_alert(
    run: _Run, rule: Rule, index: int, spec: ActionSpec, *, base: dict[str, Any], nid: str
) -> Decision:
    """An alert record for the owning CSM, its message, and the SLA escalation timer when it escalates."""
    ctx, pol, now, cid = run.ctx, run.policy, run.now, run.rating.customer.id
    owner = spec.to or (ctx.owner_email if ctx else None) or pol.default_csm_email
    owner_name = ctx.owner_name if ctx else None
    due_at = now + spec.sla if spec.sla is not None else None
    alert_ctx = {
        "id": nid,
        "due_at": due_at.isoformat() if due_at else None,
        "priority": spec.priority,
        "sla_hours": round(spec.sla.total_seconds() / 3600, 2) if spec.sla is not None else None,
    }
    if pol.alert_url_template:
        alert_ctx["ack_url"] = fill_url_template(pol.alert_url_template, {"alert_id": nid})
    alert = AlertDraft(
        alert_id=nid,
        rule_id=rule.id,
        rating_id=run.rating.rating_id,
        customer_id=cid,
        owner_email=owner,
        owner_name=owner_name,
        priority=spec.priority,
        due_at=due_at,
        context=base,
    )
    timers: tuple[TimerDraft, ...] = ()
    if spec.escalates and due_at is not None:
        timers = (
            TimerDraft(
                timer_id=derived_id("timer", nid, "sla"),
                kind="sla_escalation",
                due_at=due_at,
                customer_id=cid,
                ref=nid,
                payload={"alert_id": nid, "rule_id": rule.id, "locale": run.locale},
            ),
        )
    to = Recipient(email=owner, name=owner_name)
    context = {**base, "alert": alert_ctx}
    message = _internal_note(run, rule, spec, nid=nid, channel=Channel.EMAIL, recipient=to, context=context)
    return Decision(rule.id, spec.type, index, (message,), alert=alert, timers=timers)


def _theme_alert(run: _Run, rule: Rule, index: int, spec: ActionSpec, base: dict[str, Any]) -> Decision:
    """One message per owning team of the comment's themes (a team owning two themes gets one)."""
    pol = run.policy
    themes = list(run.analysis.themes) if run.analysis else []
    by_owner: dict[str, list[str]] = {}
    for theme in themes:
        owner = spec.to or pol.theme_owners.get(theme) or pol.theme_default_owner
        if owner:
            by_owner.setdefault(owner, []).append(theme)
    if not themes and (spec.to or pol.theme_default_owner):
        by_owner[spec.to or str(pol.theme_default_owner)] = []
    if not by_owner:
        return Decision(rule.id, spec.type, index, skipped="no_recipient")
    notes = tuple(
        _internal_note(
            run,
            rule,
            spec,
            nid=derived_id(rule.id, run.rating.rating_id, index, owner.lower()),
            channel=Channel.EMAIL,
            recipient=Recipient(email=owner),
            context={**base, "theme": {"ids": owned, "owner": owner}},
        )
        for owner, owned in by_owner.items()
    )
    return Decision(rule.id, spec.type, index, notes)


def _customer_address(
    channel: Channel, ctx: CustomerContext | None, rating: RatingSubmitted | None, customer_tz: str | None
) -> Recipient | None:
    email = (ctx.email if ctx else None) or (rating.customer.email if rating else None)
    phone = (ctx.phone if ctx else None) or (rating.customer.phone if rating else None)
    if channel is Channel.SMS:
        return Recipient(phone=phone, timezone=customer_tz) if phone else None
    return Recipient(email=email, timezone=customer_tz) if email else None


def channel_of(spec: ActionSpec) -> Channel:
    if spec.type is ActionType.CUSTOMER_SMS or spec.channel == "sms":
        return Channel.SMS
    return Channel.EMAIL


class _Step(NamedTuple):
    """One message of a customer action: now or after a delay, or one step of a nurture sequence."""

    after: timedelta
    template: str
    channel: Channel
    number: int  # 0-based position in the sequence


def _customer_action(
    run: _Run, rules: RuleSet, rule: Rule, index: int, spec: ActionSpec, *, cooled: bool
) -> Decision:
    """A message to the customer: opt-out, consent, cooldown, enrolment and the daily cap are checked."""
    rating, ctx = run.rating, run.ctx

    def skip(why: str) -> Decision:
        return Decision(rule.id, spec.type, index, skipped=why, customer_facing=True)

    if not rating.customer_verified:
        return skip("unverified_customer")
    if ctx is not None and ctx.opted_out:
        return skip("opted_out")
    consent_kind = "review" if spec.type is ActionType.REVIEW_INVITE else "contact"
    if not consent_of(rating, ctx, consent_kind):
        return skip("no_consent")
    if cooled:
        return skip("cooldown")
    tz = (ctx.timezone if ctx else None) or rating.customer.timezone
    if spec.type is ActionType.NURTURE:
        assert spec.sequence is not None
        if spec.sequence in run.fatigue.active_sequences:
            return skip("already_enrolled")
        seq = rules.sequences[spec.sequence]
        steps = [_Step(s.after, s.template, Channel(s.channel), i) for i, s in enumerate(seq.steps)]
    else:
        assert spec.template is not None
        steps = [_Step(spec.delay, spec.template, channel_of(spec), 0)]
    if all(_customer_address(s.channel, ctx, rating, tz) is None for s in steps):
        return skip("no_recipient")
    payload_base = {
        "rule_id": rule.id,
        "action": spec.type.value,
        "index": index,
        "rating_id": rating.rating_id,
        "customer_id": rating.customer.id,
        "source": rating.source,
        "locale": run.locale,
        "priority": spec.priority,
        "context": rating_context(rating, ctx, run.analysis),
        "follow_up_after": _seconds(spec.follow_up_after),
        "follow_up_to": spec.follow_up_to,
    }
    if spec.type is ActionType.NURTURE or spec.delay > timedelta(0):
        return _scheduled(run, rule, index, spec, steps, payload_base)
    if run.sent >= run.policy.daily_cap:
        return skip("daily_cap")
    message = customer_message(
        nid=notification_id(rule.id, rating.rating_id, index),
        payload={**payload_base, "template": steps[0].template, "channel": steps[0].channel.value},
        ctx=ctx,
        rating=rating,
        now=run.now,
        policy=run.policy,
        survey_key=(rule.id, rating.rating_id, index),
    )
    if message is None:
        return skip("no_recipient")
    run.sent += 1
    return Decision(rule.id, spec.type, index, (message.note,), timers=message.timers, customer_facing=True)


def _scheduled(
    run: _Run, rule: Rule, index: int, spec: ActionSpec, steps: list[_Step], payload_base: dict[str, Any]
) -> Decision:
    """Delayed messages and nurture steps become send timers: the checks run again when they fire."""
    rating, now, cid = run.rating, run.now, run.rating.customer.id
    drafts: list[TimerDraft] = []
    for step in steps:
        timer_id = derived_id("timer", rule.id, rating.rating_id, index, step.number)
        payload = {
            **payload_base,
            "template": step.template,
            "channel": step.channel.value,
            "step": step.number,
        }
        if spec.type is ActionType.NURTURE:
            payload["sequence"] = {"name": spec.sequence, "step": step.number + 1, "steps": len(steps)}
        drafts.append(TimerDraft(timer_id, "send", now + step.after, cid, rating.rating_id, payload))
    enrolment = None
    if spec.type is ActionType.NURTURE:
        assert spec.sequence is not None
        enrolment = EnrolmentDraft(
            customer_id=cid,
            sequence=spec.sequence,
            rule_id=rule.id,
            rating_id=rating.rating_id,
            steps=len(steps),
            ends_at=now + max(s.after for s in steps),
        )
    return Decision(
        rule.id, spec.type, index, timers=tuple(drafts), enrolment=enrolment, customer_facing=True
    )


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


class CustomerMessage(NamedTuple):
    """A message to the customer and the timers it starts (a re-survey's "no answer" follow-up)."""

    note: NotificationRequested
    timers: tuple[TimerDraft, ...]


def customer_message(
    *,
    nid: str,
    payload: Mapping[str, Any],
    ctx: CustomerContext | None,
    rating: RatingSubmitted | None,
    now: datetime,
    policy: Policy,
    survey_key: tuple[str | int, ...],
) -> CustomerMessage | None:
    """The message to the customer (now, or when a timer fires), and a re-survey's "no answer" timer."""
    channel = Channel(payload["channel"])
    tz = (ctx.timezone if ctx else None) or (rating.customer.timezone if rating else None)
    recipient = _customer_address(channel, ctx, rating, tz)
    if recipient is None:
        # A timer fires without the rating at hand: the snapshot taken at decision time has the address.
        snap = payload.get("context", {}).get("customer", {})
        address = snap.get("phone") if channel is Channel.SMS else snap.get("email")
        if not address:
            return None
        recipient = (
            Recipient(phone=address, timezone=tz) if channel is Channel.SMS else Recipient(email=address)
        )
    context = dict(payload.get("context") or {})
    cid = str(payload["customer_id"])
    if ctx is not None:
        context["customer"] = {**context.get("customer", {}), **_fresh_contact(ctx)}
    if payload.get("sequence"):
        context["sequence"] = payload["sequence"]
    timers: tuple[TimerDraft, ...] = ()
    if payload["action"] == ActionType.RESURVEY.value:
        survey_id = derived_id("survey", *survey_key)
        survey: dict[str, Any] = {"id": survey_id}
        if policy.survey_url_template:
            values = {"survey_id": survey_id, "customer_id": cid}
            survey["url"] = fill_url_template(policy.survey_url_template, values)
        context["survey"] = survey
        after = payload.get("follow_up_after")
        wait = timedelta(seconds=after) if after is not None else policy.resurvey_follow_up
        timers = (
            TimerDraft(
                timer_id=derived_id("timer", "no-answer", survey_id),
                kind="resurvey_no_answer",
                due_at=now + wait,
                customer_id=cid,
                ref=survey_id,
                payload={
                    "rule_id": payload["rule_id"],
                    "rating_id": payload.get("rating_id"),
                    "customer_id": cid,
                    "survey_id": survey_id,
                    "to": payload.get("follow_up_to") or policy.support_email,
                    "locale": payload.get("locale") or policy.default_locale,
                    "context": context,
                },
            ),
        )
    note = _note(
        nid=nid,
        rule_id=str(payload["rule_id"]),
        action=str(payload["action"]),
        channel=channel,
        recipient=recipient,
        template=str(payload["template"]),
        locale=str(payload.get("locale") or policy.default_locale),
        customer_id=cid,
        rating_id=payload.get("rating_id"),
        priority=str(payload.get("priority") or "normal"),
        transactional=False,
        context=context,
        now=now,
        source=payload.get("source"),
    )
    return CustomerMessage(note, timers)


def _fresh_contact(ctx: CustomerContext) -> dict[str, Any]:
    fresh = {"email": ctx.email, "phone": ctx.phone, "tier": ctx.tier, "account_value": ctx.value}
    return {k: v for k, v in fresh.items() if v is not None}


# ---- decisions on a segment alert -----------------------------------------------------------------
def decide_segment(*, rules: RuleSet, alert: SegmentAlert, now: datetime, policy: Policy) -> list[Decision]:
    """Segment rules: the owner of the segment (e.g. a store manager) hears about a drop."""
    facts = segment_facts(alert)
    context = {
        "segment": {
            "key": alert.segment,
            "attributes": alert.segment_attributes,
            "score": alert.score,
            "previous": alert.previous,
            "window": alert.window,
            "metric": alert.metric.value,
            "reason": alert.reason,
            "threshold": alert.threshold,
            "responses": alert.responses,
            "delta": facts["delta"],
            "p_value": alert.p_value,
            "drift": None if alert.drift is None else alert.drift.model_dump(mode="json"),
        }
    }
    decisions: list[Decision] = []
    for rule in evaluate(rules, facts, on="segment_alert"):
        for index, spec in enumerate(rule.actions):
            assert spec.template is not None
            if spec.type is ActionType.SEGMENT_ALERT:
                owner = spec.to or policy.segment_owner(alert.segment_attributes)
                channel, recipient = Channel.EMAIL, Recipient(email=owner)
            else:
                owner = spec.to
                channel = Channel.SLACK if spec.type is ActionType.SLACK else Channel.WEBHOOK
                recipient = Recipient(url=owner)
            if not owner:
                decisions.append(Decision(rule.id, spec.type, index, skipped="no_recipient"))
                continue
            note = _note(
                nid=derived_id(rule.id, alert.alert_id, index),
                rule_id=rule.id,
                action=spec.type,
                channel=channel,
                recipient=recipient,
                template=spec.template,
                locale=policy.default_locale,
                customer_id=None,
                rating_id=None,
                priority=spec.priority,
                transactional=True,
                context=context,
                now=now,
            )
            decisions.append(Decision(rule.id, spec.type, index, (note,)))
    return decisions
