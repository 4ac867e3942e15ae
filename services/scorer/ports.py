"""What the scorer's use cases need from storage (Protocols), and the values they exchange.

The PostgreSQL adapters live in ``services.scorer.repository``; in-memory fakes in
``tests/fakes/scorer_store.py``. The consumer's port takes the batch transaction ``tx`` as its first
argument, since the consumer loop owns it (the offsets commit in it); the evaluator's port owns its
connections, and the routes read through a session (one connection per request).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import NamedTuple, Protocol, TypeVar

from services.scorer.drift import DriftState
from services.scorer.responses import Answer, Counted, Invitation, ResponseCounts, ResponseIncrement
from services.scorer.signals import SegmentState
from services.scorer.windows import Span
from shared.scales import Metric, Sentiment

Tx = TypeVar("Tx", contravariant=True)

#: Ratings per (scale, score) in one window and segment: what ``domain.summarize`` takes.
Counts = dict[tuple[str, int], int]


# ---- the consumer: store each rating once, count it into its segments -----------------------------
class _Customer(Protocol):
    @property
    def id(self) -> str: ...


class _Account(Protocol):
    @property
    def id(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def value(self) -> float | None: ...


class Rating(Protocol):
    """What a batch stores of a rating: ``shared.events.RatingSubmitted`` or the lean ``RatingRow``."""

    @property
    def rating_id(self) -> str: ...
    @property
    def metric(self) -> Metric: ...
    @property
    def scale(self) -> str: ...
    @property
    def score(self) -> int: ...
    @property
    def sentiment(self) -> Sentiment: ...
    @property
    def customer(self) -> _Customer: ...
    @property
    def segment(self) -> dict[str, str]: ...
    @property
    def touchpoint(self) -> str | None: ...
    @property
    def comment(self) -> str | None: ...
    @property
    def account(self) -> _Account | None: ...
    @property
    def source(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def received_at(self) -> datetime: ...
    @property
    def revision(self) -> int: ...


@dataclass(frozen=True, slots=True)
class CountedSegments:
    """The counters one rating feeds once the caps applied, and what the caps took away."""

    keys: str  # its segment keys joined by ``segments.KEY_SEPARATOR``: one SQL parameter per rating
    folded: tuple[str, ...]  # dimensions whose value was folded into "other"
    dropped: int  # attributes of dimensions beyond the cap of dimensions


class RatingCounter(Protocol[Tx]):
    """The consumer's port: each call handles a whole micro-batch, inside the batch's transaction."""

    async def commit_without_flush_wait(self, tx: Tx) -> None:
        """The batch may commit without waiting for its WAL flush (the adapter says why that is safe)."""
        ...

    async def counted_all(self, tx: Tx, segments: Sequence[Mapping[str, str]]) -> list[CountedSegments]:
        """Each segment's counters, registering new dimensions and values within the caps."""
        ...

    async def apply_batch(
        self,
        tx: Tx,
        *,
        ratings: Sequence[Rating],
        keys: Sequence[str],
        minute_since: datetime,
        hour_since: datetime,
    ) -> set[str]:
        """Store the ratings not stored yet and count those (``keys[i]`` for rating i); their ids.

        Minute and hour buckets before ``minute_since`` / ``hour_since`` are not written (retention
        would prune them); the touched segments are marked for the score-event evaluator.
        """
        ...

    async def apply_revisions(
        self,
        tx: Tx,
        *,
        ratings: Sequence[Rating],
        keys: Sequence[str],
        minute_since: datetime,
        hour_since: datetime,
    ) -> set[str]:
        """Re-clicked ratings (``revision`` > 0, distinct ids): each newer than the revision held
        replaces the stored answer and its counts (``revisions.plan``/``replacement``); one never
        stored is stored and counted; older or equal ones change nothing. Returns the ids applied."""
        ...


# ---- the score-event evaluator ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DirtySegment:
    """A segment whose counters moved since it was last evaluated (``version`` moves on each batch)."""

    metric: str
    segment_key: str
    version: int


class LabelledSpan(NamedTuple):
    """A part of a window read from one counter tier; the label says which window it belongs to."""

    label: str
    span: Span


class CountsKey(NamedTuple):
    label: str
    segment_key: str


class StateKey(NamedTuple):
    segment_key: str
    window: str


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    """What the evaluator decides from for one metric: counts per (label, segment), last states."""

    counts: dict[CountsKey, Counts]
    states: dict[StateKey, SegmentState]


class ScoreEventStore(Protocol):
    """The evaluator's port."""

    async def dirty_segments(self, *, limit: int, after: DirtySegment | None) -> list[DirtySegment]:
        """Up to ``limit`` dirty segments in (metric, segment_key) order, after ``after``."""
        ...

    async def load_segments(
        self, *, metric: str, keys: Sequence[str], spans: Sequence[LabelledSpan]
    ) -> SegmentFacts: ...

    async def save_evaluation(
        self,
        *,
        states: Mapping[str, Mapping[StateKey, SegmentState]],
        evaluated: Sequence[DirtySegment],
    ) -> None:
        """In one transaction: the new states (per metric), and forget the segments evaluated unless a
        batch touched them again meanwhile (their version moved)."""
        ...


# ---- the drift step (run by the evaluator once a UTC day closed) ------------------------------------
@dataclass(frozen=True, slots=True, order=True)
class DriftKey:
    metric: str
    segment_key: str


@dataclass(frozen=True, slots=True)
class DriftRecord:
    """A stored drift state, as the API shows it."""

    metric: str
    segment_key: str
    state: DriftState
    evaluated_at: datetime


class DriftStore(Protocol):
    """What the drift step reads and saves."""

    async def drift_pending(self, *, through: date, limit: int, after: DriftKey | None) -> list[DriftKey]:
        """Up to ``limit`` (metric, segment) with day counters or a state, not folded through ``through``,
        in (metric, segment_key) order after ``after``."""
        ...

    async def drift_states(self, *, metric: str, keys: Sequence[str]) -> dict[str, DriftState]: ...

    async def first_days(self, *, metric: str, keys: Sequence[str]) -> dict[str, date]:
        """The first day with counters of each segment that has one."""
        ...

    async def day_counts(
        self, *, metric: str, since: Mapping[str, date], through: date
    ) -> dict[str, dict[date, Counts]]:
        """Each segment's day counters from its ``since`` day through ``through`` (days with answers)."""
        ...

    async def save_drift(self, *, states: Mapping[DriftKey, DriftState], evaluated_at: datetime) -> None:
        """In one transaction; a state never replaces one that folded further."""
        ...


class EvaluatorStore(ScoreEventStore, DriftStore, Protocol):
    """The evaluator's port: score events, then the drift step."""


# ---- the query API --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KeyFilter:
    """Which segment keys to read: a list, or every key of the given dimensions (a breakdown)."""

    keys: Sequence[str] = ()
    dimensions: Sequence[str] = ()


class LabelledRange(NamedTuple):
    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Registration:
    """Of a segment's attributes: the dimensions with counters, and those whose value has its own."""

    dimensions: frozenset[str]
    valued: frozenset[str]


class ScoreReader(Protocol):
    async def registration(self, *, attributes: Mapping[str, str]) -> Registration: ...

    async def drift(self, *, metric: str, keys: Sequence[str]) -> dict[str, DriftRecord]:
        """The drift states of these segments (those evaluated at least once)."""
        ...

    async def drift_list(
        self, *, metric: str | None, status: str | None, after: DriftKey | None, limit: int
    ) -> list[DriftRecord]:
        """Drift states in (metric, segment_key) order, optionally of one metric and status."""
        ...

    async def load_counts(
        self, *, metric: str, where: KeyFilter, spans: Sequence[LabelledSpan]
    ) -> dict[CountsKey, Counts]:
        """Counters of every labelled span summed per (label, segment key)."""
        ...

    async def load_rating_counts(
        self, *, metric: str, attributes: Mapping[str, str], ranges: Sequence[LabelledRange]
    ) -> dict[str, Counts]:
        """Exact counts straight from the stored ratings, for a segment without counters of its own."""
        ...

    async def load_series(
        self,
        *,
        metric: str,
        key: str | None,
        attributes: Mapping[str, str],
        tier: str,
        start: datetime,
        end: datetime,
        step: timedelta,
    ) -> dict[datetime, Counts]:
        """Counts per step (aligned on the epoch) from a tier, or from the ratings when ``key`` is None."""
        ...

    async def response_counts(
        self, *, metric: str, key: str | None, attributes: Mapping[str, str], start: datetime, end: datetime
    ) -> ResponseCounts:
        """Invited, answered and commented of the invitations sent in ``[start, end)`` (whole hours) for a
        segment: from its counters, or from the invitation rows when ``key`` is None (no counters)."""
        ...

    async def response_counts_by_key(
        self, *, metric: str, keys: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, ResponseCounts]:
        """``response_counts`` of many counted segment keys at once (a breakdown's rows), from their
        counters; a key without invitations in ``[start, end)`` is absent."""
        ...


@dataclass(frozen=True, slots=True)
class HistoryRow:
    rating_id: str
    metric: str
    scale: str
    score: int
    sentiment: str
    touchpoint: str | None
    comment: str | None
    segment: dict[str, str]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class HistoryCursor:
    """Where a page of a customer's history ends (keyset paging, newest first)."""

    occurred_at: datetime
    rating_id: str


@dataclass(frozen=True, slots=True)
class ScoreGroup:
    """One (metric, scale, score) a customer gave: how often, and the latest such rating."""

    metric: str
    scale: str
    score: int
    n: int
    latest_rating_id: str
    latest_at: datetime


@dataclass(frozen=True, slots=True)
class CommentQuery:
    """Stored comments to read: a time range [start, end), and what SQL can filter on."""

    start: datetime
    end: datetime
    metric: str | None
    segment: Mapping[str, str]
    score_min: int | None
    score_max: int | None
    text: str | None  # words the comment contains (case-insensitive), or None
    limit: int  # the newest ``limit`` comments at most


@dataclass(frozen=True, slots=True)
class CommentRow:
    rating_id: str
    metric: str
    scale: str
    score: int
    customer_id: str
    segment: dict[str, str]
    touchpoint: str | None
    comment: str
    occurred_at: datetime


class CustomerReader(Protocol):
    async def customer_ratings(
        self, *, customer_id: str, metric: str | None, before: HistoryCursor | None, limit: int
    ) -> list[HistoryRow]:
        """Newest first, keyset-paged on (occurred_at, rating_id)."""
        ...

    async def customer_score_groups(self, *, customer_id: str, metric: str | None) -> list[ScoreGroup]: ...

    async def customer_accounts(self, *, customer_id: str) -> frozenset[str]:
        """The account ids the customer's ratings named: who owns the customer, for a CSM's access."""
        ...

    async def comments(self, *, query: CommentQuery) -> list[CommentRow]:
        """Ratings with a non-empty comment, newest first (occurred_at, rating_id), at most ``limit``."""
        ...


#: Opens a read session (one connection in PostgreSQL) for the length of one request.
ScoreSessions = Callable[[], AbstractAsyncContextManager[ScoreReader]]
CustomerSessions = Callable[[], AbstractAsyncContextManager[CustomerReader]]


# ---- survey response rates (``responses``) ---------------------------------------------------------
class ResponseCounter(Protocol[Tx]):
    """The consumer's port for invitations and answers, in the batch's transaction."""

    async def counted_all(self, tx: Tx, segments: Sequence[Mapping[str, str]]) -> list[CountedSegments]:
        """Each segment's counters, registering new dimensions and values within the caps."""
        ...

    async def record_responses(
        self, tx: Tx, *, invitations: Sequence[Invitation], answers: Mapping[str, Answer]
    ) -> list[Counted]:
        """Store invitations not stored yet and first answers (invitation id -> answer); the rows
        that moved, to count once each (an answer before its invitation is kept until it comes)."""
        ...

    async def add_response_counts(self, tx: Tx, *, increments: Sequence[ResponseIncrement]) -> None:
        """Add to the per-hour counters (``increments`` in key order)."""
        ...
