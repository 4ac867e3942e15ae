"""Turns a rating (or a segment alert), context and history into decisions: messages, alerts, timers. Pure.

Nothing here reads a clock, a database or a broker: the caller passes ``now``, the customer's stored
context, the history rows and the fatigue state, and writes what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from services.actions.rules import (
    ActionSpec,
    ActionType,
    Rule,
    RuleSet,
    derived_id,
    evaluate,
    flatten,
    notification_id,
)
from services.actions.verbatims import Analysis
from shared.events import Channel, NotificationRequested, RatingSubmitted, Recipient, SegmentAlert


@dataclass(frozen=True, slots=True)
class CustomerContext:
    customer_id: str
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    tier: str | None = None
    value: float | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    opted_out: bool = False
    attributes: Mapping[str, Any] | None = None
    consent: Mapping[str, bool] | None = None


@dataclass(frozen=True, slots=True)
class PastRating:
    """One stored rating of the customer, as the history facts need it."""

    rating_id: str
    occurred_at: datetime
    normalized: float
    sentiment: str


@dataclass(frozen=True, slots=True)
class History:
    """The customer's recent ratings, including the one being decided on."""

    ratings_30d: int = 0
    negative_30d: int = 0
    positive_30d: int = 0
    average_30d: float | None = None
    previous_sentiment: str | None = None
    previous_normalized: float | None = None
    days_since_previous: float | None = None
    trend: float | None = None
    declining: bool = False


def summarize_history(
    past: Sequence[PastRating],
    *,
    rating_id: str,
    occurred_at: datetime,
    normalized: float,
    sentiment: str,
    window: timedelta = timedelta(days=30),
    trend_size: int = 5,
    decline_slope: float = -0.1,
) -> History:
    """History as of this rating: later ratings (same batch, replays) do not count.

    ``trend`` is the least-squares slope of the normalised score (0..1) per rating over the last
    ``trend_size`` ratings (at least 3); ``declining`` means that slope is at most ``decline_slope``
    and the latest rating is below the first of them.
    """
    me = PastRating(rating_id, occurred_at, normalized, sentiment)
    key = (occurred_at, rating_id)
    upto = [p for p in past if (p.occurred_at, p.rating_id) <= key and p.rating_id != rating_id]
    upto.append(me)
    upto.sort(key=lambda p: (p.occurred_at, p.rating_id))
    recent = [p for p in upto if p.occurred_at > occurred_at - window]
    previous = upto[-2] if len(upto) >= 2 else None
    last = upto[-trend_size:]
    trend = slope([p.normalized for p in last]) if len(last) >= 3 else None
    return History(
        ratings_30d=len(recent),
        negative_30d=sum(1 for p in recent if p.sentiment == "negative"),
        positive_30d=sum(1 for p in recent if p.sentiment == "positive"),
        average_30d=round(sum(p.normalized for p in recent) / len(recent), 4),
        previous_sentiment=previous.sentiment if previous else None,
        previous_normalized=previous.normalized if previous else None,
        days_since_previous=(
            round((occurred_at - previous.occurred_at).total_seconds() / 86400, 3) if previous else None
        ),
        trend=round(trend, 4) if trend is not None else None,
        declining=trend is not None and trend <= decline_slope and last[-1].normalized < last[0].normalized,
    )


def slope(values: Sequence[float]) -> float:
    """Least-squares slope of ``values`` against their index."""
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den


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


# ---- facts ----------------------------------------------------------------------------------------
def consent_of(rating: RatingSubmitted | None, ctx: CustomerContext | None, kind: str) -> bool:
    """Stored consent (CRM) wins over what the rating carried."""
    if ctx is not None and ctx.consent and kind in ctx.consent:
        return bool(ctx.consent[kind])
    if rating is None:
        return False
    return bool(getattr(rating.consent, kind))


def build_facts(
    rating: RatingSubmitted,
    ctx: CustomerContext | None,
    history: History,
    analysis: Analysis | None = None,
) -> dict[str, Any]:
    """Flat facts the rule conditions read; stored context overrides what the rating carried."""
    facts: dict[str, Any] = {
        "metric": rating.metric.value,
        "scale": rating.scale,
        "score": rating.score,
        "normalized": rating.normalized,
        "sentiment": rating.sentiment.value,
        "positive": rating.positive,
        "nps_class": rating.nps_class.value if rating.nps_class else None,
        "touchpoint": rating.touchpoint,
        "source": rating.source,
        "survey_id": rating.survey_id,
        "has_comment": bool(rating.comment and rating.comment.strip()),
        "comment.sentiment": analysis.sentiment if analysis and rating.comment else None,
        "comment.sentiment_score": analysis.score if analysis and rating.comment else None,
        "comment.language": analysis.language if analysis and rating.comment else None,
        "themes": list(analysis.themes) if analysis else [],
        "consent.contact": consent_of(rating, ctx, "contact"),
        "consent.review": consent_of(rating, ctx, "review"),
        "account.id": rating.account.id if rating.account else None,
        "account.tier": rating.account.tier if rating.account else None,
        "account.value": rating.account.value if rating.account else None,
        "history.ratings_30d": history.ratings_30d,
        "history.negative_30d": history.negative_30d,
        "history.low_scores_30d": history.negative_30d,
        "history.positive_30d": history.positive_30d,
        "history.average_30d": history.average_30d,
        "history.previous_sentiment": history.previous_sentiment,
        "history.previous_normalized": history.previous_normalized,
        "history.days_since_previous": history.days_since_previous,
        "history.trend": history.trend,
        "history.declining": history.declining,
    }
    flatten("segment", rating.segment, facts)
    if ctx is not None:
        if ctx.tier is not None:
            facts["account.tier"] = ctx.tier
        if ctx.value is not None:
            facts["account.value"] = ctx.value
        if ctx.attributes:
            attrs: dict[str, Any] = {}
            flatten("customer", dict(ctx.attributes), attrs)
            facts.update(attrs)
    facts["customer.opted_out"] = bool(ctx and ctx.opted_out)
    facts["customer.locale"] = (ctx.locale if ctx else None) or rating.customer.locale
    facts["customer.has_email"] = bool((ctx.email if ctx else None) or rating.customer.email)
    facts["customer.has_phone"] = bool((ctx.phone if ctx else None) or rating.customer.phone)
    facts["customer.has_owner"] = bool(ctx and ctx.owner_email)
    return facts


def segment_facts(alert: SegmentAlert) -> dict[str, Any]:
    delta = (
        round(alert.score - alert.previous, 4)
        if alert.score is not None and alert.previous is not None
        else None
    )
    facts: dict[str, Any] = {
        "metric": alert.metric.value,
        "window": alert.window,
        "segment": alert.segment,
        "reason": alert.reason,
        "score": alert.score,
        "previous": alert.previous,
        "delta": delta,
        "threshold": alert.threshold,
        "responses": alert.responses,
        "p_value": alert.p_value,
    }
    flatten("segment", alert.segment_attributes, facts)
    return facts


# ---- template context -----------------------------------------------------------------------------
def rating_context(
    rating: RatingSubmitted, ctx: CustomerContext | None, analysis: Analysis | None = None
) -> dict[str, Any]:
    """What templates may show: the interaction and the customer's contact details for the CSM."""
    return {
        "rating": {
            "rating_id": rating.rating_id,
            "metric": rating.metric.value,
            "scale": rating.scale,
            "score": rating.score,
            "sentiment": rating.sentiment.value,
            "touchpoint": rating.touchpoint,
            "comment": rating.comment,
            "segment": rating.segment,
            "occurred_at": rating.occurred_at.isoformat(),
            "themes": list(analysis.themes) if analysis else [],
            "comment_sentiment": analysis.sentiment if analysis and rating.comment else None,
        },
        "customer": customer_context(rating.customer.id, ctx, rating),
    }


def customer_context(
    customer_id: str, ctx: CustomerContext | None, rating: RatingSubmitted | None = None
) -> dict[str, Any]:
    account = rating.account if rating else None
    return {
        "id": customer_id,
        "email": (ctx.email if ctx else None) or (rating.customer.email if rating else None),
        "phone": (ctx.phone if ctx else None) or (rating.customer.phone if rating else None),
        "tier": (ctx.tier if ctx else None) or (account.tier if account else None),
        "account_id": account.id if account else None,
        "account_value": (ctx.value if ctx else None) or (account.value if account else None),
    }


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
) -> list[Decision]:
    """Every action the rules call for, with the reason an action is skipped (cooldown, opt-out...)."""
    pol = policy or Policy()
    fat = fatigue or Fatigue()
    locale = ((ctx.locale if ctx else None) or rating.customer.locale or pol.default_locale).split("-")[0]
    run = _Run(rating, ctx, analysis, fat, now, pol, locale.lower(), fat.sent_24h)
    facts = build_facts(rating, ctx, history, analysis)
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
        transactional=transactional,
        context=context,
        requested_at=now,
    )


def _internal_action(run: _Run, rule: Rule, index: int, spec: ActionSpec) -> Decision:
    rating, ctx, pol, now = run.rating, run.ctx, run.policy, run.now
    assert spec.template is not None
    cid = rating.customer.id
    base = rating_context(rating, ctx, run.analysis)
    nid = notification_id(rule.id, rating.rating_id, index)

    def note(
        channel: Channel, recipient: Recipient, context: dict[str, Any], n: str = nid
    ) -> NotificationRequested:
        assert spec.template is not None
        return _note(
            nid=n,
            rule_id=rule.id,
            action=spec.type,
            channel=channel,
            recipient=recipient,
            template=spec.template,
            locale=run.locale,
            customer_id=cid,
            rating_id=rating.rating_id,
            priority=spec.priority,
            transactional=True,
            context=context,
            now=now,
        )

    if spec.type is ActionType.CSM_ALERT:
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
            alert_ctx["ack_url"] = pol.alert_url_template.format(alert_id=nid)
        context = {**base, "alert": alert_ctx}
        alert = AlertDraft(
            alert_id=nid,
            rule_id=rule.id,
            rating_id=rating.rating_id,
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
        return Decision(
            rule.id,
            spec.type,
            index,
            (note(Channel.EMAIL, Recipient(email=owner, name=owner_name), context),),
            alert=alert,
            timers=timers,
        )
    if spec.type in (ActionType.SLACK, ActionType.WEBHOOK):
        if not spec.to:
            return Decision(rule.id, spec.type, index, skipped="no_recipient")
        channel = Channel.SLACK if spec.type is ActionType.SLACK else Channel.WEBHOOK
        return Decision(rule.id, spec.type, index, (note(channel, Recipient(url=spec.to), base),))
    if spec.type is ActionType.SUPPORT_CALLBACK:
        to = spec.to or pol.support_email
        return Decision(rule.id, spec.type, index, (note(Channel.EMAIL, Recipient(email=to), base),))
    if spec.type is ActionType.THEME_ALERT:
        return _theme_alert(run, rule, index, spec, base, note)
    return Decision(rule.id, spec.type, index, skipped="unsupported")


def _theme_alert(
    run: _Run, rule: Rule, index: int, spec: ActionSpec, base: dict[str, Any], note: Any
) -> Decision:
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
        note(
            Channel.EMAIL,
            Recipient(email=owner),
            {**base, "theme": {"ids": owned, "owner": owner}},
            derived_id(rule.id, run.rating.rating_id, index, owner.lower()),
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


def _customer_action(
    run: _Run, rules: RuleSet, rule: Rule, index: int, spec: ActionSpec, *, cooled: bool
) -> Decision:
    rating, ctx, now = run.rating, run.ctx, run.now
    cid = rating.customer.id

    def skip(why: str) -> Decision:
        return Decision(rule.id, spec.type, index, skipped=why, customer_facing=True)

    if ctx is not None and ctx.opted_out:
        return skip("opted_out")
    consent_kind = "review" if spec.type is ActionType.REVIEW_INVITE else "contact"
    if not consent_of(rating, ctx, consent_kind):
        return skip("no_consent")
    if cooled:
        return skip("cooldown")
    tz = (ctx.timezone if ctx else None) or rating.customer.timezone
    steps: list[tuple[timedelta, str, Channel, int]]
    if spec.type is ActionType.NURTURE:
        assert spec.sequence is not None
        if spec.sequence in run.fatigue.active_sequences:
            return skip("already_enrolled")
        seq = rules.sequences[spec.sequence]
        steps = [(s.after, s.template, Channel(s.channel), i) for i, s in enumerate(seq.steps)]
    else:
        assert spec.template is not None
        steps = [(spec.delay, spec.template, channel_of(spec), 0)]
    if all(_customer_address(ch, ctx, rating, tz) is None for _, _, ch, _ in steps):
        return skip("no_recipient")
    context = rating_context(rating, ctx, run.analysis)
    payload_base = {
        "rule_id": rule.id,
        "action": spec.type.value,
        "index": index,
        "rating_id": rating.rating_id,
        "customer_id": cid,
        "locale": run.locale,
        "priority": spec.priority,
        "context": context,
        "follow_up_after": _seconds(spec.follow_up_after),
        "follow_up_to": spec.follow_up_to,
    }
    if spec.type is ActionType.NURTURE or spec.delay > timedelta(0):
        drafts: list[TimerDraft] = []
        for after, template, channel, step in steps:
            timer_id = derived_id("timer", rule.id, rating.rating_id, index, step)
            payload = {**payload_base, "template": template, "channel": channel.value, "step": step}
            if spec.type is ActionType.NURTURE:
                payload["sequence"] = {"name": spec.sequence, "step": step + 1, "steps": len(steps)}
            drafts.append(TimerDraft(timer_id, "send", now + after, cid, rating.rating_id, payload))
        enrolment = None
        if spec.type is ActionType.NURTURE:
            assert spec.sequence is not None
            enrolment = EnrolmentDraft(
                customer_id=cid,
                sequence=spec.sequence,
                rule_id=rule.id,
                rating_id=rating.rating_id,
                steps=len(steps),
                ends_at=now + max(s[0] for s in steps),
            )
        return Decision(
            rule.id, spec.type, index, timers=tuple(drafts), enrolment=enrolment, customer_facing=True
        )
    if run.sent >= run.policy.daily_cap:
        return skip("daily_cap")
    _, template, channel, _ = steps[0]
    message = customer_message(
        nid=notification_id(rule.id, rating.rating_id, index),
        payload={**payload_base, "template": template, "channel": channel.value},
        ctx=ctx,
        rating=rating,
        now=now,
        policy=run.policy,
        survey_key=(rule.id, rating.rating_id, index),
    )
    if message is None:
        return skip("no_recipient")
    note, timers = message
    run.sent += 1
    return Decision(rule.id, spec.type, index, (note,), timers=timers, customer_facing=True)


def _seconds(value: timedelta | None) -> float | None:
    return value.total_seconds() if value is not None else None


def customer_message(
    *,
    nid: str,
    payload: Mapping[str, Any],
    ctx: CustomerContext | None,
    rating: RatingSubmitted | None,
    now: datetime,
    policy: Policy,
    survey_key: tuple[str | int, ...],
) -> tuple[NotificationRequested, tuple[TimerDraft, ...]] | None:
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
            survey["url"] = policy.survey_url_template.format(survey_id=survey_id, customer_id=cid)
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
    )
    return note, timers


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
