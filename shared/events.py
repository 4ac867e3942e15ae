"""Event payloads (CloudEvents ``data``) for every topic; the JSON Schemas are generated from these."""

from __future__ import annotations

from datetime import date, datetime
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
USAGE_OBSERVED = "com.csat.usage.observed.v1"
CUSTOMER_ERASED = "com.csat.customer.erased.v1"
HEALTH_CHANGED = "com.csat.health.changed.v1"
SURVEY_INVITED = "com.csat.survey.invited.v1"
SURVEY_OUTCOME = "com.csat.survey.outcome.v1"


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


class KeyKind(StrEnum):
    """The credential a rating arrived with: what its contact, consent and account fields are worth."""

    PUBLISHABLE = "publishable"  # a page or app (pk_ key, or a pre-split csk_ key): public, claims only
    SECRET = "secret"  # noqa: S105 - a kind name; a site's server (sk_ key)
    TOKEN = "token"  # noqa: S105 - a kind name; an API token with ratings:write
    EMAIL_LINK = "email_link"  # a one-click link we signed for this customer
    SMS = "sms"  # a reply to a survey SMS we sent (Twilio-signed webhook)
    NONE = "none"  # posted without a key (dev and test only)


class Identity(StrEnum):
    """Whether the customer id is a fact (a server said so, or proved it) or only a browser's claim."""

    VERIFIED = "verified"
    CLAIMED = "claimed"


class Provenance(_Event):
    """Who vouches for a rating. Only ``key_kind: publishable`` ratings carry claims instead of facts."""

    key_kind: KeyKind
    identity: Identity


class Claims(_Event):
    """What a publishable-key post said about the person: kept for reading, never acted on.

    A browser key is public, so these could be anyone's address, consent or account tier; consumers
    must not send messages, raise priorities or reach a person with them.
    """

    email: str | None = None
    phone: str | None = None
    consent: Consent | None = None
    account: AccountRef | None = None


class RatingSubmitted(_Event):
    """A validated, normalised rating; the collector computes every derived field once.

    ``customer.email``/``phone``, ``consent`` and ``account`` are facts: a publishable-key post has them
    moved to ``claims``. ``provenance`` is absent only on events published before it existed.
    """

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
    provenance: Provenance | None = None
    claims: Claims | None = None
    revision: int = Field(
        default=0,
        ge=0,
        description="0 for an answer's first publication; a survey re-click within its window publishes "
        "the same rating_id again with revision + 1, which replaces the earlier answer (consumers apply "
        "a revision only if it is newer than the one they hold)",
    )

    @property
    def customer_verified(self) -> bool:
        """The customer id is a fact: per-customer actions (messages, alerts, history) may use it."""
        return self.provenance is None or self.provenance.identity is Identity.VERIFIED


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


class DriftDetails(_Event):
    """What the drift detector saw (reason ``drift_drop``); drops in the metric's points (CSAT and NPS
    points, CES points of ease on 1-7), positive when the segment got worse."""

    status: str = Field(description="warming_up, too_small, monitoring or drop_detected")
    day: date = Field(description="the closed UTC day whose answers confirmed the drop")
    since: date = Field(description="the estimated change point: the first day of the drop")
    drop: float | None = Field(default=None, description="before - after")
    drop_ci_low: float | None = Field(default=None, description="95 % interval of the drop")
    drop_ci_high: float | None = None
    before: float | None = Field(default=None, description="the baseline's level in force since then")
    after: float | None = Field(default=None, description="the level of the answers since then")
    answers_before: int | None = None
    answers_after: int | None = None
    evidence: float = Field(description="log of the Shiryaev-Roberts statistic (nats)")
    evidence_threshold: float = Field(description="the alarm threshold: log of the days between false alarms")
    watched_drop: float | None = Field(default=None, description="the drop the detector was tuned to")
    min_drop: float = Field(description="the smallest drop worth an alert (setting)")
    months_per_false_alarm: float = Field(description="the false-alarm budget: one per segment per N months")
    message: str = Field(description="the finding in one English sentence")


class SegmentAlert(_Event):
    """A segment fell below its threshold (``below_threshold``, over ``window``), or its drift detector
    confirmed a drop (``drift_drop``: ``drift`` says what, ``window`` spans the days since the change)."""

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
    drift: DriftDetails | None = None


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    SLACK = "slack"
    WEBHOOK = "webhook"
    #: A survey invitation kept by the collector for the customer's web widget (no address).
    IN_APP = "in_app"


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
    source: str | None = Field(
        default=None, description="the collector source of the rating behind it (per-source daily cap)"
    )
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
        "crashed_mid_send, provider_opt_out, no_address, template, address_cap, source_cap",
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


class UsageObserved(_Event):
    """A dated observation of named usage signals for a customer, an account or a contact of an account."""

    observation_id: str = Field(description="Client key or derived from the content; replays dedupe on it")
    customer_id: str | None = Field(default=None, description="The contact observed (None: the account)")
    account_id: str | None = Field(default=None, description="The account (B2B company) observed or joined")
    observed_at: AwareDatetime
    received_at: AwareDatetime
    signals: dict[str, float] = Field(
        description="Named numbers, e.g. logins_7d, features_used, data_volume_gb, tickets_open, seats_active"
    )
    source: str | None = None


class CustomerErased(_Event):
    """A customer's erasure was requested (GDPR art. 17): every subscriber removes or pseudonymises what it
    holds about ``customer_id`` (email, phone, comments, free text) and cancels what is pending for them.

    Keyed by customer id. Counts are not personal data: ratings stay counted, under ``pseudonym``.
    Replays are harmless: a second erasure of the same customer finds nothing left to remove.
    """

    erasure_id: str = Field(description="One request; each service records its own status under it")
    customer_id: str = Field(min_length=1, max_length=200)
    pseudonym: str = Field(
        description="What replaces the customer id where a row is kept (random, unlinkable)"
    )
    requested_at: AwareDatetime
    requested_by: str | None = Field(
        default=None, description="The admin's user or token id (not an address)"
    )
    opted_out: bool = Field(
        default=False,
        description="The customer had opted out: keep an opt-out under a keyed hash of the id",
    )


class HealthComponentOut(_Event):
    """One line of a health explanation: what a component read, scored and gave, in points."""

    id: str
    status: str = Field(description="counted, assumed, worst or skipped")
    value: float | None = None
    normalised: float | None = Field(default=None, description="0-100, 100 the healthy end")
    weight: float
    max_points: float
    points: float
    reason: str | None = None


class HealthChanged(_Event):
    """An account's (or a lone customer's) health score or band moved; keyed by the subject's id."""

    subject_kind: str = Field(description="account, or customer (a customer in no account)")
    subject_id: str
    at: AwareDatetime = Field(
        description="The instant the health is computed as of (the newest input's time)"
    )
    score: float | None = Field(description="0-100, one decimal; None when no component has data")
    band: str | None = Field(description="healthy, at_risk or critical")
    previous_score: float | None = None
    previous_band: str | None = None
    delta_30d: float | None = Field(
        default=None, description="Score now minus the score in force 30 days ago"
    )
    transition: int = Field(description="How many band changes this subject has had (this one included)")
    fell: bool = Field(description="The band moved to a worse one")
    model_version: int | None = None
    components: list[HealthComponentOut] = Field(default_factory=list)


class SurveyInvited(_Event):
    """A survey invitation went out (its message was requested); keyed by customer id.

    An answer is a rating whose ``survey_id`` is this ``invitation_id``: the scorer counts invitations and
    answers per segment (the response rate in ``GET /v1/scores``). Published once per invitation (a
    replay carries the same event id and invitation id); reminders are not invitations.
    """

    invitation_id: str = Field(description="The answers' survey_id; derived from survey and interaction")
    survey_id: str = Field(description="The survey definition's id (post-delivery-csat)")
    metric: Metric
    scale: str
    channel: str = Field(description="email, sms or in_app")
    segment: dict[str, str] = Field(default_factory=dict, description="The interaction's, as the answers'")
    invited_at: AwareDatetime = Field(description="When the message was requested")
    expires_at: AwareDatetime = Field(description="Answers close then")
    source: str | None = None


class SurveyOutcomeKind(StrEnum):
    """What became of an invitation, as published on ``csat.surveys.outcomes.v1``."""

    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"
    ANSWERED = "answered"


class SurveyOutcome(_Event):
    """What became of a survey invitation: its message sent, failed or suppressed, or its first answer.

    Keyed by customer id, like ``SurveyInvited``. Published once per (invitation, outcome), only when the
    invitation's stored state changed; the CloudEvent id is ``survey-outcome-<invitation_id>-<outcome>``,
    so a replay after a crash carries the same id (deduplicate on it). An answer arriving before the
    notifier's outcome proves the message went out: ``sent`` (``inferred``) is published before
    ``answered``. ``expired`` is not published (answers close at ``expires_at`` of the invited event).
    """

    invitation_id: str = Field(description="The invited event's invitation_id (the answers' survey_id)")
    survey_id: str = Field(description="The survey definition's id (post-delivery-csat)")
    customer_id: str = Field(description="The invitation's customer id (also the record's key)")
    channel: str = Field(description="email, sms or in_app")
    segment: dict[str, str] = Field(default_factory=dict, description="The interaction's, as the answers'")
    outcome: SurveyOutcomeKind = Field(description="sent, failed, suppressed or answered")
    occurred_at: AwareDatetime = Field(
        description="sent, failed, suppressed: the notifier's outcome time (an inferred sent: when the "
        "message was requested); answered: when the first answer was received"
    )
    reason: str | None = Field(
        default=None,
        description="failed and suppressed: the notifier's bounded reason code (rejected, opted_out...)",
    )
    has_comment: bool | None = Field(
        default=None, description="answered only: the first answer carried a comment (the follow-up)"
    )
    inferred: bool = Field(
        default=False,
        description="sent only: no delivery outcome had come yet; the answer proves the message went out",
    )


EVENT_MODELS: dict[str, type[BaseModel]] = {
    RATING_SUBMITTED: RatingSubmitted,
    SCORE_CHANGED: ScoreChanged,
    SEGMENT_ALERT: SegmentAlert,
    ACTION_DECIDED: ActionDecided,
    NOTIFICATION_REQUESTED: NotificationRequested,
    NOTIFICATION_OUTCOME: NotificationOutcome,
    DEAD_LETTER: DeadLetter,
    INTERACTION_RECORDED: InteractionRecorded,
    USAGE_OBSERVED: UsageObserved,
    CUSTOMER_ERASED: CustomerErased,
    HEALTH_CHANGED: HealthChanged,
    SURVEY_INVITED: SurveyInvited,
    SURVEY_OUTCOME: SurveyOutcome,
}
