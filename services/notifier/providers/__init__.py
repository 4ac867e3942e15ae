"""Provider adapters: each speaks one provider's wire format behind the ``Provider`` protocol.

Every adapter sorts what happened to one attempt into a ``Verdict``; the dispatcher decides what to do
with it (retry later, give up, suppress the address, record an ambiguous send), never the adapter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar, runtime_checkable

from shared.events import Channel

#: The connection of the caller's transaction (SQLAlchemy's ``AsyncConnection`` on PostgreSQL).
Conn_contra = TypeVar("Conn_contra", contravariant=True)


@dataclass(frozen=True, slots=True)
class Message:
    notification_id: str
    channel: Channel
    to: str
    subject: str | None
    body: str
    #: An HTML alternative to ``body`` (multipart/alternative), for survey emails.
    html: str | None = None
    rule_id: str | None = None
    customer_id: str | None = None
    transactional: bool = False
    #: Extra email headers (List-Unsubscribe, List-Unsubscribe-Post for RFC 8058).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The request's fields (template, locale, context...) for structured channels (generic webhook).
    data: Mapping[str, Any] = field(default_factory=dict)


class Verdict(StrEnum):
    ACCEPTED = "accepted"
    #: Not accepted and provably not sent (429, a 5xx answer, no connection): safe to send again.
    RETRY = "retry"
    #: The request left and no answer came back (read timeout, dropped connection): it may have gone out.
    AMBIGUOUS = "ambiguous"
    #: Refused for good (4xx): sending again cannot help.
    REJECTED = "rejected"
    #: The provider says the recipient opted out or is inactive (Twilio 21610, Postmark 406).
    RECIPIENT_OPTED_OUT = "recipient_opted_out"


@dataclass(frozen=True, slots=True)
class SendResult:
    verdict: Verdict
    #: Bounded label for ``csat_provider_attempts_total{result}``: accepted, rate_limited, server_error,
    #: network_error, timeout_after_send, rejected, recipient_opted_out.
    kind: str
    provider_message_id: str | None = None
    retry_after_s: float | None = None
    detail: str | None = None


def accepted(provider_message_id: str | None) -> SendResult:
    return SendResult(Verdict.ACCEPTED, "accepted", provider_message_id=provider_message_id)


class Provider(Protocol):
    name: str
    #: True when sending the same notification again cannot reach the recipient twice: our own outbox
    #: (unique per notification id) and the generic webhook (receivers dedupe on ``X-CSAT-Id``).
    dedupes: bool

    async def send(self, message: Message) -> SendResult: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Found:
    """The provider has the message: it went out (``provider_message_id`` is the provider's own id)."""

    provider_message_id: str | None


@dataclass(frozen=True, slots=True)
class Absent:
    """The provider answered that it has no message with this notification id (yet: see its delay)."""


@dataclass(frozen=True, slots=True)
class CannotTell:
    """No answer worth acting on. ``lasting``: asking again soon will not help (the feature is not
    available to this account or key); otherwise (rate limit, outage) the next look may answer."""

    reason: str
    detail: str
    lasting: bool = False


LookupResult = Found | Absent | CannotTell


@runtime_checkable
class LookupProvider(Protocol):
    """A provider that can say whether it received a message, by the notification id it carried.

    Lets the notifier reconcile an ``unknown`` delivery (the answer never came) instead of leaving it
    for a person: found -> sent; absent, twice, well after the attempt -> sent again.
    """

    name: str

    async def lookup(self, notification_id: str) -> LookupResult: ...


@runtime_checkable
class InTransactionProvider(Protocol[Conn_contra]):
    """A provider that delivers by writing to the notifier's own database (the embedded outbox).

    The dispatcher then claims, delivers and records a batch in one transaction: there is no moment
    when the message went out and its record did not, so no 'sending' claim and no lease are needed.
    """

    name: str
    dedupes: bool

    async def send(self, message: Message) -> SendResult: ...

    async def deliver_in(self, conn: Conn_contra, messages: Sequence[Message]) -> list[SendResult]: ...

    async def aclose(self) -> None: ...
