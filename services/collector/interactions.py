"""Interaction input model and normalisation: pure, no I/O, validated like ratings with errors at the field.

An interaction is something that happened to a customer (``ticket.solved``, ``order.delivered``,
``chat.closed``, ``store.visit`` or any dotted name of the sender's choosing). Surveys start from it: the
actions' survey definitions read its type, attributes and segment to decide whether to ask, when and how.
"""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.collector.domain import AccountIn, CustomerIn, check_occurred_at, check_segment
from shared.events import AccountRef, AttributeValue, Consent, CustomerRef, InteractionRecorded

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"
_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,30}(\.[a-z][a-z0-9_]{0,30}){0,3}$")
_ATTRIBUTE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_ATTRIBUTES = 30
MAX_ATTRIBUTE_TEXT = 500
#: Integer attributes within 64 bits: what JSON libraries (ours: orjson; JavaScript's BigInt aside) write.
MIN_ATTRIBUTE_INT = -(2**63)
MAX_ATTRIBUTE_INT = 2**63 - 1

#: Types with a documented meaning; any other dotted lower-case name is accepted too.
KNOWN_TYPES: tuple[str, ...] = ("ticket.solved", "order.delivered", "chat.closed", "store.visit")

InteractionId = Annotated[str, StringConstraints(pattern=_ID)]


class InteractionConsentIn(BaseModel):
    """What the customer agreed to, when the sender knows; ``contact`` must then be said explicitly."""

    model_config = ConfigDict(extra="forbid")

    contact: bool
    review: bool = False


class InteractionIn(BaseModel):
    """One interaction as a client (or a helpdesk mapping) sends it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "interaction_id": "order-5512-delivered",
                    "type": "order.delivered",
                    "customer": {"id": "cus_1042", "email": "ana@example.com", "locale": "fr"},
                    "occurred_at": "2026-11-23T09:30:00Z",
                    "attributes": {"order_id": "5512", "carrier": "dhl", "items": 3},
                    "segment": {"store": "paris-1", "channel": "web"},
                }
            ]
        },
    )

    interaction_id: InteractionId | None = Field(
        default=None, description="Client key; a retry with the same id is published once"
    )
    type: Annotated[str, StringConstraints(max_length=127)] = Field(
        description="ticket.solved, order.delivered, chat.closed, store.visit or any dotted lower-case name"
    )
    customer: CustomerIn
    occurred_at: AwareDatetime | None = Field(default=None, description="When it happened (default: now)")
    attributes: dict[str, AttributeValue] = Field(
        default_factory=dict,
        description="Facts the survey conditions read (agent_replied, order_id, carrier...): JSON scalars",
    )
    segment: dict[str, Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=dict, description="Attributes the survey's answers are analysed by: store, channel..."
    )
    account: AccountIn | None = None
    consent: InteractionConsentIn | None = Field(default=None, description="Leave out when unknown")

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if not _TYPE.match(text):
            raise ValueError(
                f"type {value!r} must be a dotted lower-case name such as order.delivered "
                "(letters, digits, _; at most 4 parts)"
            )
        return text

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _occurred_at_is_text(cls, value: Any) -> Any:
        return check_occurred_at(value)

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, value: dict[str, AttributeValue]) -> dict[str, AttributeValue]:
        if len(value) > MAX_ATTRIBUTES:
            raise ValueError(f"at most {MAX_ATTRIBUTES} attributes")
        for key, item in value.items():
            if not _ATTRIBUTE.match(key):
                raise ValueError(f"attribute {key!r} must be lower-case letters, digits or _ (max 40)")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"attribute {key!r} must be a finite number")
            if isinstance(item, int) and not MIN_ATTRIBUTE_INT <= item <= MAX_ATTRIBUTE_INT:
                raise ValueError(f"attribute {key!r} must be an integer within 64 bits (-2^63 to 2^63-1)")
            if isinstance(item, str) and len(item) > MAX_ATTRIBUTE_TEXT:
                raise ValueError(f"attribute {key!r} is longer than {MAX_ATTRIBUTE_TEXT} characters")
        return value

    @field_validator("segment")
    @classmethod
    def _segment_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return check_segment(value)


class InteractionRejected(ValueError):
    """Raised by normalisation with the offending field path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def new_interaction_id() -> str:
    return uuid.uuid4().hex


def _in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; one whose UTC time falls outside years 1-9999 (0001-01-01T00:00:00+01:00) is
    refused at its field rather than failing the request."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InteractionRejected("occurred_at", "occurred_at is out of range once in UTC") from None


def _clean(value: AttributeValue) -> AttributeValue:
    return value.strip() if isinstance(value, str) else value


def normalize_interaction(
    interaction: InteractionIn,
    *,
    received_at: datetime,
    interaction_id: str | None = None,
    source: str | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> InteractionRecorded:
    """The event every consumer reads: times in UTC, text trimmed, the id chosen once."""
    occurred = _in_utc(interaction.occurred_at or received_at)
    if occurred - received_at > max_future_skew:
        raise InteractionRejected("occurred_at", "occurred_at is in the future")
    customer: dict[str, Any] = interaction.customer.model_dump()
    return InteractionRecorded(
        interaction_id=interaction.interaction_id or interaction_id or new_interaction_id(),
        type=interaction.type,
        customer=CustomerRef(**customer),
        occurred_at=occurred,
        received_at=received_at.astimezone(UTC),
        attributes={k: _clean(v) for k, v in interaction.attributes.items()},
        segment={k: v.strip() for k, v in interaction.segment.items()},
        account=AccountRef(**interaction.account.model_dump()) if interaction.account else None,
        consent=Consent(**interaction.consent.model_dump()) if interaction.consent else None,
        source=source,
    )


def fingerprint(interaction: InteractionRecorded, *, client_occurred_at: datetime | None) -> bytes:
    """What makes two submissions "the same interaction": the normalised content, not the receive time."""
    content = interaction.model_dump(mode="json", exclude={"interaction_id", "received_at", "occurred_at"})
    content["occurred_at"] = client_occurred_at.astimezone(UTC).isoformat() if client_occurred_at else None
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()


@dataclass(frozen=True, slots=True)
class EncodedInteraction:
    """A normalised interaction as the bytes it is published as, with what the intake needs beside them.

    ``normalize_interaction_encoded`` builds it without an ``InteractionRecorded`` model: the same JSON
    (byte for byte) and the same fingerprint as ``normalize_interaction`` + ``fingerprint`` + the
    event's JSON, as ``services.collector.domain.normalize_encoded`` does for ratings.
    """

    interaction_id: str
    customer_id: str
    received_at: datetime
    value: bytes
    fingerprint: bytes | None


#: ``InteractionRecorded``'s fields in order: ``normalize_interaction_encoded`` writes them by hand, so a
#: new field must be added there too (the import fails until it is; the equivalence tests check the bytes).
_EVENT_FIELDS = (
    "interaction_id",
    "type",
    "customer",
    "occurred_at",
    "received_at",
    "attributes",
    "segment",
    "account",
    "consent",
    "source",
)
if tuple(InteractionRecorded.model_fields) != _EVENT_FIELDS:  # pragma: no cover - a guard for the next change
    raise RuntimeError("InteractionRecorded's fields changed: update normalize_interaction_encoded")
if tuple(CustomerRef.model_fields) != ("id", "email", "phone", "locale", "timezone"):  # pragma: no cover
    raise RuntimeError("CustomerRef's fields changed: update normalize_interaction_encoded")


def normalize_interaction_encoded(
    interaction: InteractionIn,
    *,
    received_at: datetime,
    interaction_id: str | None = None,
    source: str | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
    keyed: bool = True,
) -> EncodedInteraction | None:
    """``normalize_interaction`` written straight to the event's JSON (and its fingerprint when ``keyed``).

    The same check and refusal (``InteractionRejected`` naming ``occurred_at``); the value is the bytes
    ``InteractionRecorded``'s serializer writes for the event ``normalize_interaction`` builds, and the
    fingerprint the one ``fingerprint`` computes from it (tests/unit/test_collector_interactions.py
    checks both over generated interactions). None for what it does not write the same way (a value
    orjson refuses): the caller then takes the model path, which words any problem as before.
    """
    client_occurred = interaction.occurred_at
    occurred = _in_utc(client_occurred or received_at)
    if occurred - received_at > max_future_skew:
        raise InteractionRejected("occurred_at", "occurred_at is in the future")
    received = received_at.astimezone(UTC)
    c = interaction.customer
    customer = {"id": c.id, "email": c.email, "phone": c.phone, "locale": c.locale, "timezone": c.timezone}
    attributes = {k: v.strip() if isinstance(v, str) else v for k, v in interaction.attributes.items()}
    segment = {k: v.strip() for k, v in interaction.segment.items()}
    a = interaction.account
    account = None if a is None else {"id": a.id, "tier": a.tier, "value": a.value}
    k = interaction.consent
    consent = None if k is None else {"contact": k.contact, "review": k.review}
    iid = interaction.interaction_id or interaction_id or new_interaction_id()
    try:
        value = orjson.dumps(
            {
                "interaction_id": iid,
                "type": interaction.type,
                "customer": customer,
                "occurred_at": occurred,
                "received_at": received,
                "attributes": attributes,
                "segment": segment,
                "account": account,
                "consent": consent,
                "source": source,
            },
            option=orjson.OPT_UTC_Z,
        )
        mark = None
        if keyed:
            # ``fingerprint``'s content: the event without its id and times, plus the client's occurred_at
            # (key order does not matter: sorted).
            content = {
                "type": interaction.type,
                "customer": customer,
                "attributes": attributes,
                "segment": segment,
                "account": account,
                "consent": consent,
                "source": source,
                "occurred_at": client_occurred.astimezone(UTC).isoformat() if client_occurred else None,
            }
            mark = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()
    except orjson.JSONEncodeError:
        return None
    return EncodedInteraction(
        interaction_id=iid, customer_id=c.id, received_at=received, value=value, fingerprint=mark
    )
