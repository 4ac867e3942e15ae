"""Turns a rating, its customer's context and history into decisions and notification requests. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.actions.rules import INTERNAL, ActionType, Rule, RuleSet, evaluate, flatten, notification_id
from shared.events import Channel, NotificationRequested, RatingSubmitted, Recipient


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


@dataclass(frozen=True, slots=True)
class History:
    ratings_30d: int = 0
    negative_30d: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    rule_id: str
    action: ActionType
    index: int
    notification: NotificationRequested | None
    skipped: str | None = None


def build_facts(rating: RatingSubmitted, ctx: CustomerContext | None, history: History) -> dict[str, Any]:
    """Flat facts the rule conditions read; stored context overrides what the rating carried."""
    facts: dict[str, Any] = {
        "metric": rating.metric.value,
        "scale": rating.scale,
        "score": rating.score,
        "normalized": rating.normalized,
        "sentiment": rating.sentiment.value,
        "nps_class": rating.nps_class.value if rating.nps_class else None,
        "touchpoint": rating.touchpoint,
        "has_comment": bool(rating.comment),
        "consent.contact": rating.consent.contact,
        "consent.review": rating.consent.review,
        "account.id": rating.account.id if rating.account else None,
        "account.tier": rating.account.tier if rating.account else None,
        "account.value": rating.account.value if rating.account else None,
        "customer.opted_out": bool(ctx and ctx.opted_out),
        "history.ratings_30d": history.ratings_30d,
        "history.negative_30d": history.negative_30d,
    }
    flatten("segment", rating.segment, facts)
    if ctx is not None:
        if ctx.tier is not None:
            facts["account.tier"] = ctx.tier
        if ctx.value is not None:
            facts["account.value"] = ctx.value
        if ctx.attributes:
            flatten("customer", dict(ctx.attributes), facts)
    return facts


def _recipient(
    action: ActionType,
    rule_to: str | None,
    rating: RatingSubmitted,
    ctx: CustomerContext | None,
    default_csm_email: str,
) -> tuple[Channel, Recipient] | None:
    if action is ActionType.CSM_ALERT:
        owner = rule_to or (ctx.owner_email if ctx else None) or default_csm_email
        return Channel.EMAIL, Recipient(email=owner, name=ctx.owner_name if ctx else None)
    if action is ActionType.SLACK:
        return Channel.SLACK, Recipient(url=rule_to)
    if action is ActionType.WEBHOOK:
        return Channel.WEBHOOK, Recipient(url=rule_to)
    email = (ctx.email if ctx else None) or rating.customer.email
    phone = (ctx.phone if ctx else None) or rating.customer.phone
    tz = (ctx.timezone if ctx else None) or rating.customer.timezone
    if action is ActionType.CUSTOMER_EMAIL:
        return (Channel.EMAIL, Recipient(email=email, timezone=tz)) if email else None
    if action is ActionType.CUSTOMER_SMS:
        return (Channel.SMS, Recipient(phone=phone, timezone=tz)) if phone else None
    return None


def decide(
    *,
    rules: RuleSet,
    rating: RatingSubmitted,
    ctx: CustomerContext | None,
    history: History,
    last_fired: Mapping[str, datetime],
    now: datetime,
    default_csm_email: str,
    default_locale: str = "en",
) -> list[Decision]:
    """Every action the rules call for, with the reason an action is skipped (cooldown, opt-out...)."""
    facts = build_facts(rating, ctx, history)
    decisions: list[Decision] = []
    locale = (ctx.locale if ctx else None) or rating.customer.locale or default_locale
    for rule in evaluate(rules, facts):
        cooled = _in_cooldown(rule, last_fired, now)
        for index, spec in enumerate(rule.actions):
            internal = spec.type in INTERNAL
            skip = None
            if cooled and not internal:
                skip = "cooldown"
            elif not internal and ctx is not None and ctx.opted_out:
                skip = "opted_out"
            target = _recipient(spec.type, spec.to, rating, ctx, default_csm_email)
            if target is None and skip is None:
                skip = "no_recipient"
            if skip is not None or target is None:
                decisions.append(Decision(rule.id, spec.type, index, None, skip or "no_recipient"))
                continue
            channel, recipient = target
            note = NotificationRequested(
                notification_id=notification_id(rule.id, rating.rating_id, index),
                rule_id=rule.id,
                action=spec.type.value,
                channel=channel,
                recipient=recipient,
                template=spec.template,
                locale=locale.split("-")[0],
                customer_id=rating.customer.id,
                rating_id=rating.rating_id,
                priority=spec.priority,
                transactional=internal,
                context=_context(rating, ctx),
                requested_at=now,
            )
            decisions.append(Decision(rule.id, spec.type, index, note))
    return decisions


def _in_cooldown(rule: Rule, last_fired: Mapping[str, datetime], now: datetime) -> bool:
    if rule.cooldown <= timedelta(0):
        return False
    last = last_fired.get(rule.id)
    return last is not None and now - last < rule.cooldown


def _context(rating: RatingSubmitted, ctx: CustomerContext | None) -> dict[str, Any]:
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
        },
        "customer": {
            "id": rating.customer.id,
            "email": (ctx.email if ctx else None) or rating.customer.email,
            "phone": (ctx.phone if ctx else None) or rating.customer.phone,
            "tier": (ctx.tier if ctx else None) or (rating.account.tier if rating.account else None),
            "account_id": rating.account.id if rating.account else None,
            "account_value": (ctx.value if ctx else None)
            or (rating.account.value if rating.account else None),
        },
    }
