"""The scorer's lean decode path: rating events straight into typed msgspec rows.

The full path (``shared.envelope.decode``) validates each rating with pydantic into four nested
models: about five times the cost of decoding the same JSON into frozen msgspec structs, and it ran
on every record of every micro-batch. The structs below carry the same rules as
``shared.events.RatingSubmitted`` (types, enums, bounds, aware datetimes, defaults, extra fields
ignored), checked strictly: msgspec takes a value only in its canonical JSON type. Whatever the lean
path does not take, for any reason (a lax value pydantic would coerce such as ``"4"`` for ``4``,
unusual headers, another event type, invalid data), goes through the full path, which accepts it as
before or gives the dead-letter reason word for word as before. So the lean path accepts a subset of
what the full path accepts, with the same values (``tests/unit/test_scorer_decoding.py``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec

from shared import events as ev
from shared.consumer import RawRecord
from shared.envelope import DecodeError, Envelope, decode
from shared.scales import Metric, NpsClass, Sentiment

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

# gc=False: rows hold only strings, numbers, enums, datetimes and a dict of strings, never a cycle;
# keeping thousands of them per micro-batch out of the collector's lists is what the GC tuning in
# main.py was after.


class CustomerRow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``shared.events.CustomerRef``."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None


class AccountRow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``shared.events.AccountRef``."""

    id: str | None = None
    tier: str | None = None
    value: float | None = None


class ConsentRow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``shared.events.Consent``."""

    contact: bool = False
    review: bool = False


class RatingRow(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """``shared.events.RatingSubmitted``, field for field."""

    rating_id: str
    metric: Metric
    scale: str
    score: int
    normalized: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    sentiment: Sentiment
    positive: bool
    nps_class: NpsClass | None = None
    customer: CustomerRow
    segment: dict[str, str] = {}
    touchpoint: str | None = None
    comment: str | None = None
    account: AccountRow | None = None
    consent: ConsentRow = ConsentRow()
    source: str | None = None
    survey_id: str | None = None
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    revision: Annotated[int, msgspec.Meta(ge=0)] = 0


_ROWS = msgspec.json.Decoder(RatingRow)
# The one disagreement found between the two parsers on values both accept: a time with more than six
# fractional digits, which msgspec rounds and pydantic truncates. Such records (and any with a \u
# escape, which could spell those digits) take the full path; other matches only cost speed.
_LONG_FRACTION = re.compile(rb"\.\d{7,}[Zz+-]")
_RATING_TYPE = ev.RATING_SUBMITTED.encode()
# The attributes that are not extensions (``shared.envelope``'s list).
_CORE = frozenset(
    {"id", "type", "source", "specversion", "time", "subject", "datacontenttype", "partitionkey"}
)
_NOT_EXTENSIONS = frozenset({f"ce_{name}" for name in _CORE} | {"content-type"})


def decode_record(record: RawRecord) -> Envelope | str:
    """The consumer's decoder: the lean path when it takes the record, else the full path's answer."""
    lean = decode_lean(record)
    if lean is not None:
        return lean
    try:
        return decode(headers=record.headers, key=record.key, value=record.value)
    except DecodeError as exc:
        return str(exc)


def decode_lean(record: RawRecord) -> Envelope | None:
    """A rating event in the common form as an envelope around a :class:`RatingRow`; ``None`` otherwise.

    The headers are read as ``shared.envelope`` reads them in its common case (CloudEvents 1.0, JSON
    data, RFC 3339 time, UTF-8 attributes).
    """
    headers = dict(record.headers)
    # Popped one by one: what is left over are the extensions (no set difference per record).
    if headers.pop("ce_type", None) != _RATING_TYPE or headers.pop("ce_specversion", None) != b"1.0":
        return None
    content_type = headers.pop("content-type", None)
    if content_type is not None and not content_type.startswith(b"application/json"):
        return None
    value = record.value
    # A one-byte scan first: most values hold no backslash at all, and then no \u escape.
    if value is None or (value.find(b"\\") >= 0 and b"\\u" in value) or _LONG_FRACTION.search(value):
        return None
    try:
        event_id = headers.pop("ce_id").decode()
        source = headers.pop("ce_source").decode()
        raw_time = headers.pop("ce_time", None)
        time = datetime.fromisoformat(raw_time.decode()) if raw_time is not None else None
        raw_subject = headers.pop("ce_subject", None)
        subject = raw_subject.decode() if raw_subject is not None else None
        extensions = (
            {
                name[3:]: raw.decode()
                for name, raw in headers.items()
                if name.startswith("ce_") and name not in _NOT_EXTENSIONS
            }
            if headers
            else {}
        )
        row = _ROWS.decode(value)
    except (KeyError, UnicodeDecodeError, ValueError, msgspec.DecodeError):
        return None
    if not event_id or not source or (time is not None and time.tzinfo is None):
        return None
    key = record.key
    return Envelope(
        id=event_id,
        type=ev.RATING_SUBMITTED,
        source=source,
        time=time,
        subject=subject,
        key=key.decode("utf-8", "replace") if key is not None else None,
        data=row,
        extensions=extensions,
    )
