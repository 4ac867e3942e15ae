"""The collector's ports: what it keeps in PostgreSQL and where it publishes, as small interfaces.

Plain records and Protocols only (no SQL, no Kafka): ``repository.PgStore`` and
``publisher.KafkaPublisher`` are the real adapters, ``tests/fakes/collector_store.py`` an in-memory store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from shared.envelope import OutgoingRecord
from shared.events import KeyKind


class StoreUnavailable(RuntimeError):
    """The database did not answer in time; nothing may be promised to the client."""


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge in time; nothing may be promised to the client."""


class SourceExists(ValueError):
    """A source with this id exists already."""


@dataclass(frozen=True, slots=True)
class Source:
    source_id: str
    name: str
    allowed_origins: tuple[str, ...] = ()
    rate_per_s: float | None = None
    rate_burst: int | None = None
    disabled: bool = False
    created_at: datetime | None = None
    #: The version of the source's identity secret (derived, never stored) and when it last changed.
    identity_version: int = 1
    identity_rotated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    source_id: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    kind: KeyKind = KeyKind.PUBLISHABLE


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is posting: the source behind a valid key, an API token's holder, or the anonymous dev source.

    ``kind`` decides what the ratings' contact, consent and account fields are worth: facts, except for
    a publishable key (public by nature), whose ratings carry them as claims.
    """

    source: Source
    key_id: str | None
    kind: KeyKind


class ClaimState(StrEnum):
    CLAIMED = "claimed"  # this request owns the rating_id and must publish, then confirm or release
    REPLAY = "replay"  # already accepted with the same content: answer as the first time
    CONFLICT = "conflict"  # already used with different content (or by another source)
    PENDING = "pending"  # a concurrent attempt with the same content is in flight


class Claim(NamedTuple):
    """One id to claim (a named tuple: one is made per rating, a frozen dataclass cost twice as much)."""

    rating_id: str
    source_id: str
    fingerprint: bytes


@dataclass(frozen=True, slots=True)
class Standing:
    """An idempotency record as a survey re-click reads it: the answer standing under a rating id."""

    source_id: str
    fingerprint: bytes
    state: str  # 'pending' while a publish is in flight, then 'accepted'
    revision: int
    claimed_at: datetime
    first_accepted_at: datetime | None  # when the first answer was accepted: the re-click window's start


@dataclass(frozen=True, slots=True)
class SmsSurvey:
    request_id: str
    customer_id: str
    metric: str
    scale: str
    expires_at: datetime
    survey_id: str | None = None
    locale: str | None = None
    touchpoint: str | None = None
    segment: dict[str, str] = field(default_factory=dict)
    account: dict[str, Any] | None = None
    answered_at: datetime | None = None
    #: Sent for a survey invitation (``survey_id`` is the invitation id): its answer takes the
    #: invitation's rating id, and a second reply is matched like a second click.
    invitation: bool = False
    #: The invitation's re-click window in seconds (its link's claim ``w``); None: the collector's default.
    reclick_window_s: int | None = None


@dataclass(frozen=True, slots=True)
class InAppSurvey:
    """A survey invitation waiting for the customer's next visit, shown by the web widget."""

    request_id: str
    customer_id: str
    #: The invitation id: the link's survey id.
    survey_id: str
    #: The invitation's signed answer link token (what ``/v1/email/<token>`` carries).
    token: str
    expires_at: datetime
    locale: str | None = None


class SourceRegistry(Protocol):
    """Sources (who may post ratings) and their keys, stored only as hashes."""

    async def principal_for_key(self, *, key_hash: bytes, now: datetime) -> Principal | None: ...
    async def all_origins(self) -> set[str]: ...
    async def create_source(self, *, source: Source) -> Source: ...
    async def update_source(self, *, source_id: str, changes: dict[str, Any]) -> Source | None: ...
    async def get_source(self, *, source_id: str) -> Source | None: ...
    async def list_sources(self) -> list[Source]: ...
    async def delete_source(self, *, source_id: str) -> bool: ...
    async def add_key(
        self,
        *,
        source_id: str,
        key_id: str,
        key_hash: bytes,
        kind: KeyKind,
        expire_others_at: datetime | None,
    ) -> KeyInfo:
        """Store a key; ``expire_others_at`` ends the source's other keys *of the same kind* then."""
        ...

    async def list_keys(self, *, source_id: str) -> list[KeyInfo]: ...
    async def revoke_key(self, *, source_id: str, key_id: str) -> bool: ...
    async def rotate_identity(self, *, source_id: str, now: datetime) -> Source | None:
        """Bump the source's identity-secret version (the previous one stays valid for a grace period)."""
        ...


class IdempotencyRecords(Protocol):
    """One row per client-chosen rating_id: claimed before publishing, confirmed after the ack."""

    async def claim(
        self, *, claims: Sequence[Claim], lease_s: float, confirm: Sequence[str] = ()
    ) -> dict[str, ClaimState]:
        """Claim ``claims``; in the same statement (one transaction) confirm ``confirm``, which must name
        none of the claimed ids."""
        ...

    async def confirm(self, *, rating_ids: Sequence[str]) -> None:
        """Mark published; the first confirmation also stamps ``first_accepted_at``."""
        ...

    async def release(self, *, rating_ids: Sequence[str]) -> None: ...
    async def purge(self, *, older_than: datetime) -> int: ...
    async def standing(self, *, rating_id: str) -> Standing | None:
        """The record under a rating id, for a survey re-click's decision (``reclick.second_answer``)."""
        ...

    async def revise(
        self, *, rating_id: str, source_id: str, from_revision: int, fingerprint: bytes, lease_s: float
    ) -> bool:
        """Claim the next revision (compare-and-set on ``from_revision``): the row becomes 'pending' with
        the new fingerprint and ``from_revision + 1``; False when another request changed it first."""
        ...


class SmsSurveys(Protocol):
    """Survey SMS sent, keyed by a hash of the phone number, so a reply finds its customer."""

    async def add_sms_survey(self, *, survey: SmsSurvey, phone_hash: bytes) -> None: ...
    async def open_sms_survey(self, *, phone_hashes: Sequence[bytes], now: datetime) -> SmsSurvey | None:
        """The survey a reply from this number answers (``sms.pick_sms_survey``), by any of its hashes."""
        ...

    async def mark_sms_answered(self, *, request_id: str, rating_id: str, at: datetime) -> None: ...


class InAppSurveys(Protocol):
    """Survey invitations for the web widget, by customer id."""

    async def add_inapp_survey(self, *, survey: InAppSurvey) -> None:
        """Idempotent on the request id (derived from the invitation)."""
        ...

    async def inapp_surveys(self, *, customer_id: str, now: datetime) -> list[InAppSurvey]:
        """The customer's unexpired in-app invitations, newest first (at most 20)."""
        ...


class SurveyStore(SmsSurveys, InAppSurveys, IdempotencyRecords, Protocol):
    """What the survey channels read and write: SMS and in-app surveys, and the answers standing."""


class CollectorStore(SourceRegistry, IdempotencyRecords, SmsSurveys, InAppSurveys, Protocol):
    """Everything above in one database, plus the readiness probe."""

    async def check(self) -> None: ...


class Publisher(Protocol):
    """Where accepted ratings go: returns once the broker acknowledged every record (acks=all)."""

    async def publish(self, records: Sequence[OutgoingRecord]) -> None: ...

    async def check(self) -> None: ...
