"""What rule conditions and message templates read about a rating: the customer's stored context, their
recent history (counts, trend) and the flat facts built from both. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.actions.rules import flatten
from services.actions.verbatims import Analysis
from shared.events import RatingSubmitted, SegmentAlert


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


@dataclass(frozen=True, slots=True)
class HistoryWindow:
    """How much of a customer's past the history facts read, and what counts as a declining trend."""

    days: int = 90
    per_customer: int = 50
    trend_size: int = 5
    decline_slope: float = -0.1

    def of(self, rating: RatingSubmitted, past: Sequence[PastRating]) -> History:
        """The history facts of ``rating`` given the customer's stored ratings (the consumer and dry run)."""
        return summarize_history(
            past,
            rating_id=rating.rating_id,
            occurred_at=rating.occurred_at,
            normalized=rating.normalized,
            sentiment=rating.sentiment.value,
            trend_size=self.trend_size,
            decline_slope=self.decline_slope,
        )


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


# ---- facts ----------------------------------------------------------------------------------------
def consent_of(rating: RatingSubmitted | None, ctx: CustomerContext | None, kind: str) -> bool:
    """Stored consent (CRM) wins over what the rating carried (a publishable key's consent is a claim,
    kept apart by the collector, so it never counts here)."""
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
    health: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Flat facts the rule conditions read; stored context overrides what the rating carried.

    ``health``: the rating's account's stored health (``score``, ``band``, ``previous_band``,
    ``delta_30d``), read as ``health.*``; each is None when there is none."""
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
        "key_kind": rating.provenance.key_kind.value if rating.provenance else None,
        "customer.verified": rating.customer_verified,
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
    for name in ("score", "band", "previous_band", "delta_30d"):
        facts[f"health.{name}"] = (health or {}).get(name)
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
    if alert.drift is not None:
        facts.update({f"drift.{k}": v for k, v in alert.drift.model_dump(mode="json").items()})
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
