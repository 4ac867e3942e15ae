"""Usage observations as clients send them (product analytics, CRM syncs): validation and the event. Pure.

An observation is dated and names its signals (``logins_7d``, ``features_used``, ``data_volume_gb``,
``tickets_open``, ``seats_active`` or any lower-case name); it is about a customer (a contact), an
account, or a contact of an account (then it also says the contact belongs to that account). Numbers
only: a boolean or a quoted number is refused rather than guessed, and so is NaN or infinity. An
observation without ``observation_id`` gets one derived from its content, so a client retrying the same
observation is counted once, as with ratings.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.events import UsageObserved

SIGNAL_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_SIGNALS = 50
MAX_MAGNITUDE = 1e12
OBSERVATION_NAMESPACE = uuid.UUID("2d6f8a0e-4b1c-4f7a-9a3e-5c1b7d9e0f42")

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"

SignalName = Annotated[str, StringConstraints(pattern=SIGNAL_PATTERN)]
SignalValue = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
SubjectId = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class UsageIn(BaseModel):
    """One usage observation as a client sends it (``POST /v1/usage`` takes a batch of these)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "observation_id": "mixpanel-2026-11-23-acc_77",
                    "account_id": "acc_77",
                    "observed_at": "2026-11-23T00:00:00Z",
                    "signals": {"logins_7d": 42, "features_used": 7, "seats_active": 12},
                },
                {
                    "customer_id": "cus_1042",
                    "account_id": "acc_77",
                    "observed_at": "2026-11-23T00:00:00Z",
                    "signals": {"logins_7d": 5, "tickets_open": 1},
                },
            ]
        },
    )

    observation_id: Annotated[str, StringConstraints(pattern=_ID)] | None = Field(
        default=None, description="Client key; a retry with the same id is counted once"
    )
    customer_id: SubjectId | None = Field(default=None, description="The contact observed")
    account_id: SubjectId | None = Field(
        default=None, description="The account observed, or the account the contact belongs to"
    )
    observed_at: AwareDatetime = Field(description="When the figures were true (RFC 3339)")
    signals: dict[SignalName, SignalValue] = Field(
        min_length=1,
        max_length=MAX_SIGNALS,
        description=f"At most {MAX_SIGNALS} named finite numbers; names are lower-case letters, digits, _",
    )

    @field_validator("observed_at", mode="before")
    @classmethod
    def _observed_at_is_text(cls, value: Any) -> Any:
        """RFC 3339 text only: pydantic would read a bare number as seconds since 1970."""
        if isinstance(value, int | float):
            raise ValueError("observed_at must be an RFC 3339 date-time string such as 2026-11-23T09:30:00Z")
        return value

    @model_validator(mode="after")
    def _has_a_subject(self) -> UsageIn:
        if self.customer_id is None and self.account_id is None:
            raise ValueError("customer_id: give customer_id, account_id or both")
        return self


class UsageRejected(ValueError):
    """An observation that passed the model but cannot be accepted, with the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an observation was refused, and the input at fault (``signals.logins_7d``)."""

    field: str
    message: str


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic's errors as field paths; a whole-object check names its field first ("customer_id: ...")."""
    out: list[FieldError] = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts = [str(p) for p in err["loc"] if p != "[key]"]
        if not parts:
            head, sep, tail = msg.partition(": ")
            if sep and " " not in head:
                parts, msg = [head], tail
        out.append(FieldError(".".join(parts) or "body", msg))
    return out


def _content(usage: UsageIn) -> dict[str, Any]:
    return {
        "customer_id": usage.customer_id,
        "account_id": usage.account_id,
        "observed_at": usage.observed_at.astimezone(UTC).isoformat(),
        "signals": {k: float(v) for k, v in sorted(usage.signals.items())},
    }


def derived_observation_id(usage: UsageIn) -> str:
    """The same observation sent twice without a key gets the same id, so it is counted once."""
    digest = hashlib.sha256(orjson.dumps(_content(usage), option=orjson.OPT_SORT_KEYS)).hexdigest()
    return "obs-" + str(uuid.uuid5(OBSERVATION_NAMESPACE, digest))


def usage_fingerprint(usage: UsageIn) -> bytes:
    """What makes two submissions under one key "the same observation" (a different one is a conflict)."""
    return hashlib.sha256(orjson.dumps(_content(usage), option=orjson.OPT_SORT_KEYS)).digest()


def observe(
    usage: UsageIn,
    *,
    received_at: datetime,
    observation_id: str | None = None,
    source: str | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
) -> UsageObserved:
    """The event for an accepted observation; ``observation_id`` is the ``Idempotency-Key`` header's."""
    observed = usage.observed_at.astimezone(UTC)
    if observed - received_at > max_future_skew:
        raise UsageRejected("observed_at", "observed_at is in the future")
    return UsageObserved(
        observation_id=usage.observation_id or observation_id or derived_observation_id(usage),
        customer_id=usage.customer_id,
        account_id=usage.account_id,
        observed_at=observed,
        received_at=received_at,
        signals={k: float(v) for k, v in usage.signals.items()},
        source=source,
    )
