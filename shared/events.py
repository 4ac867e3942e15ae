"""Event payloads (CloudEvents ``data``) for every topic; the JSON Schemas are generated from these."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.scales import Metric, NpsClass, Sentiment

RATING_SUBMITTED = "com.csat.rating.submitted.v1"
SCORE_CHANGED = "com.csat.score.changed.v1"
SEGMENT_ALERT = "com.csat.segment.alert.v1"
ACTION_DECIDED = "com.csat.action.decided.v1"
NOTIFICATION_REQUESTED = "com.csat.notification.requested.v1"
NOTIFICATION_OUTCOME = "com.csat.notification.outcome.v1"
DEAD_LETTER = "com.csat.dead_letter.v1"
INTERACTION_RECORDED = "com.csat.interaction.recorded.v1"


class _Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CustomerRef(_Event):
    id: str = Field(min_length=1, max_length=200)
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None


class AccountRef(_Event):
    id: str | None = None
    tier: str | None = None
    value: float | None = None


class Consent(_Event):
    contact: bool = False
    review: bool = False


class RatingSubmitted(_Event):
    """A validated, normalised rating; the collector computes every derived field once."""

    rating_id: str
    metric: Metric
    scale: str
    score: int
    normalized: float = Field(ge=0.0, le=1.0, description="0..1, 1 is the best answer on any scale")
    sentiment: Sentiment
    positive: bool
    nps_class: NpsClass | None = None
    customer: CustomerRef
    segment: dict[str, str] = Field(default_factory=dict)
    touchpoint: str | None = None
    comment: str | None = None
    account: AccountRef | None = None
    consent: Consent = Field(default_factory=Consent)
    source: str | None = None
    survey_id: str | None = None
    occurred_at: AwareDatetime
    received_at: AwareDatetime


class ScoreChanged(_Event):
    """A segment's rolling score moved; keyed by segment so a segment's history stays ordered."""

    metric: Metric
    window: str
    segment: str
    segment_attributes: dict[str, str] = Field(default_factory=dict)
    score: float | None
    responses: int
    previous: float | None = None
    delta: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    insufficient: bool
    computed_at: AwareDatetime


class SegmentAlert(_Event):
    """A segment fell below its threshold or dropped significantly against its previous window."""

    alert_id: str
    metric: Metric
    window: str
    segment: str
    segment_attributes: dict[str, str] = Field(default_factory=dict)
    reason: str
    score: float | None
    previous: float | None
    threshold: float | None = None
    p_value: float | None = None
    responses: int
    computed_at: AwareDatetime


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    SLACK = "slack"
    WEBHOOK = "webhook"


class Recipient(_Event):
    email: str | None = None
    phone: str | None = None
    url: str | None = None
    name: str | None = None
    timezone: str | None = None


class ActionDecided(_Event):
    decision_id: str
    rule_id: str
    action: str
    rating_id: str | None
    customer_id: str | None
    decided_at: AwareDatetime


class NotificationRequested(_Event):
    """Ask the notifier to send one message; ``notification_id`` is deterministic so replays dedupe."""

    notification_id: str
    rule_id: str
    action: str
    channel: Channel
    recipient: Recipient
    template: str
    locale: str = "en"
    customer_id: str | None = None
    rating_id: str | None = None
    priority: str = "normal"
    transactional: bool = Field(
        default=False, description="internal alerts (CSM, support) ignore customer opt-out and caps"
    )
    context: dict[str, Any] = Field(default_factory=dict)
    requested_at: AwareDatetime
    not_before: datetime | None = None


class OutcomeStatus(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"


class NotificationOutcome(_Event):
    notification_id: str
    status: OutcomeStatus
    channel: Channel
    provider: str
    attempts: int
    detail: str | None = None
    provider_message_id: str | None = None
    at: AwareDatetime
    reason: str | None = Field(
        default=None,
        description="bounded code: opted_out, daily_cap, quiet_hours, rejected, exhausted, ambiguous, "
        "crashed_mid_send, provider_opt_out, no_address, template",
    )
    rule_id: str | None = None
    customer_id: str | None = None
    next_attempt_at: AwareDatetime | None = Field(default=None, description="when a deferred message goes")


class DeadLetter(_Event):
    """A record a consumer could not use, with why; the original bytes travel base64-encoded."""

    consumer: str
    reason: str
    topic: str
    partition: int
    offset: int
    key: str | None
    value_b64: str
    headers: dict[str, str]
    failed_at: AwareDatetime


#: An interaction attribute: a JSON scalar (lists and objects belong in several attributes).
AttributeValue = str | int | float | bool | None


class InteractionRecorded(_Event):
    """Something that happened to a customer (a ticket solved, an order delivered) that a survey may follow.

    Keyed by customer id, like ratings, so a customer's interactions and answers stay in order.
    """

    interaction_id: str = Field(description="A retry carries the same id (helpdesk webhooks: derived)")
    type: str = Field(description="ticket.solved, order.delivered, chat.closed, store.visit, any dotted name")
    customer: CustomerRef
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict, description="What the survey conditions read: agent_replied, order_id, ..."
    )
    segment: dict[str, str] = Field(default_factory=dict, description="Carried into the survey's answers")
    account: AccountRef | None = None
    consent: Consent | None = Field(default=None, description="None: not stated by the sender")
    source: str | None = None


EVENT_MODELS: dict[str, type[BaseModel]] = {
    RATING_SUBMITTED: RatingSubmitted,
    SCORE_CHANGED: ScoreChanged,
    SEGMENT_ALERT: SegmentAlert,
    ACTION_DECIDED: ActionDecided,
    NOTIFICATION_REQUESTED: NotificationRequested,
    NOTIFICATION_OUTCOME: NotificationOutcome,
    DEAD_LETTER: DeadLetter,
    INTERACTION_RECORDED: InteractionRecorded,
}
