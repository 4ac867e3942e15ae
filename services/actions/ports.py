"""The stores the actions handlers and routes use, as Protocols, and the records they exchange.

``services.actions.repository`` implements them on PostgreSQL, ``tests/fakes/actions_store.py`` in
memory. A ``Stores`` bundle is bound to one transaction: everything written through it commits (or
rolls back) together, with the consumer's offsets or the timers it fires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from services.actions.alertpages import AlertPage, PageQuery
from services.actions.engine import AlertDraft, EnrolmentDraft, Fatigue, TimerDraft
from services.actions.facts import CustomerContext, PastRating
from services.actions.health.evidence import Evidence
from services.actions.health.transitions import HealthPoint, HealthState
from services.actions.outcomes import DecisionRow
from services.actions.surveys.decisions import PastInvitation as PastInvite
from services.actions.surveys.outcome_events import MarkedInvitation
from services.actions.timers import AlertState, DueTimer
from services.actions.verbatims import Analysis
from shared.events import RatingSubmitted, UsageObserved


@dataclass(frozen=True, slots=True)
class BatchFacts:
    """What deciding a batch of ratings needs to know, read together."""

    rules_version: int | None
    contexts: dict[str, CustomerContext]
    past: dict[str, list[PastRating]]
    fatigue: dict[str, Fatigue]


class Enrolled(NamedTuple):
    """A customer's place in one nurture sequence."""

    customer_id: str
    sequence: str


@dataclass(frozen=True, slots=True)
class StoredRuleSet:
    version: int
    document: Any
    origin: str
    created_at: datetime | None = None
    author: str | None = None  # who saved it (a principal's log name); None for the file or a key


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """What deciding on one rating of one customer reads, read without writing (the dry run)."""

    rules_version: int | None
    context: CustomerContext | None
    past: list[PastRating]
    fatigue: Fatigue


@dataclass(frozen=True, slots=True)
class StoredRating:
    """A rating as actions keeps it: no comment text, segment or address (the scorer keeps those)."""

    rating_id: str
    customer_id: str
    metric: str
    scale: str
    score: int
    sentiment: str
    occurred_at: datetime
    has_comment: bool
    survey_id: str | None
    themes: tuple[str, ...]
    comment_sentiment: str | None


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """The alert after an acknowledgement or resolution; ``error`` says why nothing changed."""

    alert: dict[str, Any] | None
    error: str | None  # None, "not_found", "already resolved"


class RatingStore(Protocol):
    """Each customer's rating history, as the rules' history facts need it."""

    async def insert_new(
        self, *, ratings: Sequence[RatingSubmitted], analyses: Mapping[str, Analysis]
    ) -> set[str]: ...

    async def revise(
        self, *, ratings: Sequence[RatingSubmitted], analyses: Mapping[str, Analysis]
    ) -> set[str]:
        """Survey re-clicks: store each rating's answer where its ``revision`` is newer than the one
        held (score, sentiment, comment analysis); returns those ids (older or equal: a no-op)."""
        ...

    async def batch_facts(
        self,
        *,
        customer_ids: Sequence[str],
        since: datetime,
        per_customer: int,
        now: datetime,
        commented_customers: Sequence[str],
        survey_ids: Sequence[str],
    ) -> BatchFacts: ...

    async def customer_facts(
        self, *, customer_id: str, since: datetime, per_customer: int, now: datetime
    ) -> CustomerFacts: ...

    async def stored(self, *, limit: int, rating_id: str | None = None) -> list[StoredRating]: ...


class DecisionStore(Protocol):
    """The decision log, and the alerts and timers decisions create."""

    async def existing(self, *, ids: Sequence[str]) -> set[str]: ...
    async def insert(self, *, rows: Sequence[DecisionRow]) -> None: ...
    async def insert_outcomes(
        self,
        *,
        decisions: Sequence[DecisionRow],
        alerts: Sequence[AlertDraft],
        timers: Sequence[TimerDraft],
        now: datetime,
    ) -> None: ...
    async def sent_last_24h(self, *, customer_ids: Sequence[str], now: datetime) -> dict[str, int]: ...
    async def recent(self, *, customer_id: str | None, limit: int) -> list[dict[str, Any]]: ...


class CustomerStore(Protocol):
    """Customer context set through the API (contact, value, owner, consent, opt-out)."""

    async def contexts(self, *, customer_ids: Sequence[str]) -> dict[str, CustomerContext]: ...
    async def erased(self, *, customer_ids: Sequence[str]) -> set[str]:
        """The ids among these whose customer was erased (GDPR): no survey is decided or sent to them."""
        ...

    async def upsert(self, *, customer_id: str, fields: dict[str, Any]) -> None: ...
    async def get(self, *, customer_id: str) -> dict[str, Any] | None: ...


class EnrolmentStore(Protocol):
    """Nurture sequence enrolments."""

    async def enrol(self, *, enrolments: Sequence[EnrolmentDraft], now: datetime) -> None: ...
    async def statuses(self, *, customer_ids: Sequence[str]) -> dict[Enrolled, str]: ...
    async def complete(self, *, enrolled: Sequence[Enrolled]) -> None: ...
    async def stop_all(self, *, customer_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Reach:
    """The alerts a CSM may see: those they own by address, or of the accounts they own."""

    owner_email: str | None
    accounts: frozenset[str]


class AlertStore(Protocol):
    """CSM alerts and their lifecycle (open, acknowledged, resolved; escalated)."""

    async def lock(self, *, alert_ids: Sequence[str]) -> dict[str, AlertState]: ...
    async def mark_escalated(self, *, alert_ids: Sequence[str], now: datetime) -> None: ...
    async def search(
        self,
        *,
        status: str | None,
        owner: str | None,
        customer_id: str | None,
        limit: int,
        reach: Reach | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first; ``reach`` (a CSM's) keeps only their own alerts, None keeps every one."""
        ...

    async def page(self, *, query: PageQuery, reach: Reach | None, now: datetime) -> AlertPage:
        """One page of the filter in its order (``alertpages``), with the filter's counts at ``now``."""
        ...

    async def get(self, *, alert_id: str) -> dict[str, Any] | None: ...
    async def transition(
        self, *, alert_id: str, to: str, by: str | None, note: str | None, now: datetime
    ) -> AlertTransition: ...
    async def assign(
        self, *, alert_id: str, owner_email: str, owner_name: str | None, by: str | None, now: datetime
    ) -> AlertTransition: ...


class TimerStore(Protocol):
    """Durable timers: SLA escalations, re-survey follow-ups, delayed messages and nurture steps."""

    async def claim_due(self, *, now: datetime, limit: int) -> list[DueTimer]: ...
    async def mark_fired(self, *, outcomes: Mapping[str, str], now: datetime) -> None: ...
    async def insert(self, *, timers: Sequence[TimerDraft], now: datetime) -> None: ...
    async def resurvey_answered(self, *, timer: DueTimer) -> bool: ...
    async def search(
        self, *, customer_id: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]: ...


class RuleSetStore(Protocol):
    """Versions of the rule set; the newest is in force."""

    async def latest_version(self) -> int | None: ...
    async def load(self, *, version: int | None = None) -> StoredRuleSet | None: ...
    async def lock(self) -> None: ...
    async def insert(
        self, *, version: int, document: Any, origin: str, author: str | None = None
    ) -> bool: ...
    async def versions(self, *, limit: int) -> list[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class NewInvitation:
    """An invitation as decided, with what sending it later needs (address, segment, source)."""

    invitation_id: str
    survey_id: str
    interaction_id: str
    customer_id: str
    channel: str
    locale: str
    segment: Mapping[str, str]
    recipient: Mapping[str, str | None]
    source: str | None
    due_at: datetime
    expires_at: datetime
    reminder_at: datetime | None


@dataclass(frozen=True, slots=True)
class StoredInvitation:
    """An invitation row as the scheduler and the stats read it."""

    invitation_id: str
    survey_id: str
    interaction_id: str
    customer_id: str
    channel: str
    locale: str
    segment: Mapping[str, str]
    recipient: Mapping[str, str | None]
    source: str | None
    due_at: datetime
    expires_at: datetime
    reminder_at: datetime | None
    status: str  # scheduled | requested | stopped
    delivery: str  # pending | sent | bounced | failed | suppressed | unknown
    reminders_sent: int = 0
    requested_at: datetime | None = None
    sent_at: datetime | None = None
    answered_at: datetime | None = None
    answered_with_comment: bool = False
    stop_reason: str | None = None


@dataclass(frozen=True, slots=True)
class InvitationUpdate:
    """What firing an invitation changed: its status, the next time to look at it, a reminder sent."""

    invitation_id: str
    status: str
    next_at: datetime | None
    requested_at: datetime | None = None
    reminded: bool = False
    stop_reason: str | None = None


class SurveyStore(Protocol):
    """Survey invitations: one row per (survey, interaction), its own durable timer (``next_at``)."""

    async def history(self, *, customer_ids: Sequence[str], since: datetime) -> dict[str, list[PastInvite]]:
        """Each customer's invitations of any survey due after ``since`` (the throttle's memory)."""
        ...

    async def insert(self, *, invitations: Sequence[NewInvitation]) -> set[str]:
        """Store new invitations (a replayed one is left as it is); returns the ids actually inserted."""
        ...

    async def claim_due(self, *, now: datetime, limit: int) -> list[StoredInvitation]:
        """Invitations whose ``next_at`` has come, locked until the transaction ends (SKIP LOCKED)."""
        ...

    async def update(self, *, updates: Sequence[InvitationUpdate], now: datetime) -> None: ...
    async def mark_answered(self, *, answers: Mapping[str, tuple[datetime, bool]]) -> list[MarkedInvitation]:
        """First answers by invitation id (when, with a comment); later answers change nothing. An answer
        proves the message went out: a ``pending`` or ``unknown`` delivery becomes ``sent``. Returns the
        invitations this call answered (with their delivery before it), and only those."""
        ...

    async def mark_delivery(self, *, outcomes: Mapping[str, tuple[str, datetime]]) -> list[MarkedInvitation]:
        """The notifier's outcome of an invitation's first message (sent, failed, suppressed...), taken
        while the delivery is ``pending`` or ``unknown``. Returns the invitations this call changed."""
        ...

    async def list(self, *, survey_id: str | None, since: datetime | None) -> list[StoredInvitation]: ...


@dataclass(frozen=True, slots=True)
class Stores:
    """Every store, bound to one transaction."""

    ratings: RatingStore
    decisions: DecisionStore
    customers: CustomerStore
    enrolments: EnrolmentStore
    alerts: AlertStore
    timers: TimerStore
    rule_sets: RuleSetStore
    survey_sets: RuleSetStore  # the same versioned-document store, for the survey definitions
    surveys: SurveyStore
    health: HealthStore


class Transactions(Protocol):
    """Opens the stores on a transaction: ``begin`` commits on success, ``connect`` is for reading,
    ``read_only`` refuses any write (the dry run: the database itself guarantees it changes nothing)."""

    def begin(self) -> AbstractAsyncContextManager[Stores]: ...
    def connect(self) -> AbstractAsyncContextManager[Stores]: ...
    def read_only(self) -> AbstractAsyncContextManager[Stores]: ...


# ---- account health -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Subject:
    """Whose health: an account (its contacts pooled), or a customer who belongs to no account."""

    kind: str  # "account" | "customer"
    id: str


@dataclass(frozen=True, slots=True)
class HealthAlert:
    """The CSM alert a fall to at-risk or critical opens (its id is derived from the transition)."""

    alert_id: str
    subject: Subject
    owner_email: str
    owner_name: str | None
    priority: str
    context: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HealthSave:
    """One recomputation to store: the new state, the history point (if the health moved) and why."""

    subject: Subject
    state: HealthState
    point: HealthPoint | None
    delta_30d: float | None
    model_version: int | None
    explanation: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class HealthInputs:
    """What a recomputation reads, in one round trip: the newest saved model, each subject's evidence,
    and the stored state and history of each subject with any evidence."""

    #: (version, document) of the newest saved model, the document None when it is the version the
    #: caller holds already; None when no model was saved (the file's model applies).
    model: tuple[int, Any | None] | None
    evidence: dict[Subject, Evidence]
    states: dict[Subject, tuple[HealthState | None, list[HealthPoint]]]
    #: (owner_email, owner_name) of each stored account among the subjects with evidence (``accounts``)
    owners: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


class HealthStore(Protocol):
    """Accounts, their contacts, the inputs the health model reads, and the health it computed."""

    async def add_observations(self, *, observations: Sequence[UsageObserved]) -> list[UsageObserved]:
        """Store observations; returns the ones not seen before (replays dedupe on observation_id)."""
        ...

    async def add_ratings(self, *, ratings: Sequence[RatingSubmitted]) -> list[RatingSubmitted]:
        """Store the answers the model reads and join each new one's customer to its account (one round
        trip); returns the ones not seen before."""
        ...

    async def join(self, *, members: Sequence[tuple[str, str]]) -> None:
        """Record (account_id, customer_id) memberships (idempotent)."""
        ...

    async def accounts_of(self, *, customer_ids: Sequence[str]) -> dict[str, list[str]]: ...
    async def evidence(self, *, subjects: Sequence[Subject]) -> dict[Subject, Evidence]:
        """Each subject's evidence (an account's contacts pooled), read for all of them at once."""
        ...

    async def states(
        self, *, subjects: Sequence[Subject]
    ) -> dict[Subject, tuple[HealthState | None, list[HealthPoint]]]:
        """Each subject's stored state (row-locked until commit) and history, for all of them at once."""
        ...

    async def inputs(
        self, *, subjects: Sequence[Subject], customers: Sequence[str] = (), known_version: int | None
    ) -> HealthInputs:
        """``latest_model``, ``evidence`` of the subjects and ``states`` (row-locked until commit) of those
        with any ratings or observations, in one statement (they were four round trips a batch). The
        subjects are those given, then those of ``customers`` (``accounts_of``: each one's accounts, else
        the customer) not among them; ``evidence`` holds each subject once, in that order."""
        ...

    async def save(self, *, saves: Sequence[HealthSave]) -> None:
        """Write recomputed healths (each subject once) and their history points, in one statement."""
        ...

    async def account(self, *, account_id: str) -> dict[str, Any] | None: ...
    async def upsert_account(self, *, account_id: str, fields: dict[str, Any]) -> dict[str, Any]: ...
    async def accounts(self, *, account_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored accounts among ``account_ids``, by id (what ``account`` gives for each)."""
        ...

    async def open_alert(self, *, alert: HealthAlert, now: datetime) -> bool:
        """Insert the alert unless it exists (once per transition); True when inserted."""
        ...

    async def open_alerts(self, *, alerts: Sequence[HealthAlert], now: datetime) -> set[str]:
        """``open_alert`` for several in one statement; returns the ids inserted."""
        ...

    async def at_risk(
        self, *, owner: str | None, limit: int, reach: Reach | None = None
    ) -> list[dict[str, Any]]:
        """At-risk and critical subjects ranked by value x risk (risk = 100 - score); ``reach``: only
        those a CSM owns (by owner address, or the account among theirs)."""
        ...

    async def owner_of(self, *, subject: Subject) -> str | None:
        """The owner address of an account (or of a lone customer), if any."""
        ...

    async def health(self, *, subject: Subject) -> dict[str, Any] | None:
        """The current health with its explanation and history, or None."""
        ...

    async def rule_facts(self, *, subjects: Sequence[Subject]) -> dict[Subject, dict[str, Any]]:
        """Each subject's stored ``score``, ``band``, ``previous_band`` (the band before the current
        one) and ``delta_30d``, for the rules' ``health.*`` facts; subjects without a health are left out."""
        ...

    async def latest_model(self) -> tuple[int, Any] | None:
        """The newest saved health model (version, document), or None (the file's model applies)."""
        ...

    async def save_model(self, *, document: Any, origin: str, author: str | None) -> int:
        """Store a validated model as the next version; returns that version."""
        ...

    async def models(self, *, limit: int) -> list[dict[str, Any]]:
        """Saved versions, newest first (version, origin, author, created_at)."""
        ...
