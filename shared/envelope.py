"""CloudEvents 1.0 in Kafka binary mode (``ce_*`` headers, JSON value), via the CloudEvents SDK."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from cloudevents.core.bindings import kafka as ce_kafka
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel, ValidationError

from shared import tracing
from shared.events import EVENT_MODELS

JSON = "application/json"


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """A record ready for ``producer.send``: topic, key, value and headers as aiokafka wants them."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """A decoded CloudEvent with its data already validated against the event type's model.

    ``decode`` gives the event type's pydantic model; a consumer with a lean decoder of its own
    (``TransactionalConsumer(decoder=...)``, the scorer's msgspec rows) may carry another validated object.
    A msgspec struct rather than a frozen dataclass: one is made per record consumed, and a frozen
    dataclass's ``__init__`` (an ``object.__setattr__`` per field) cost ten times as much.
    """

    id: str
    type: str
    source: str
    time: datetime | None
    subject: str | None
    key: str | None
    data: Any
    extensions: dict[str, Any]


class DecodeError(ValueError):
    """A record that is not a valid event of a known type; the reason goes to the dead-letter topic."""


def encode(
    *,
    topic: str,
    event_type: str,
    source: str,
    event_id: str,
    data: BaseModel,
    key: str | None,
    subject: str | None = None,
    time: datetime | None = None,
    extensions: dict[str, str] | None = None,
) -> OutgoingRecord:
    """Wrap ``data`` as a binary-mode CloudEvent keyed by ``key`` (partition affinity).

    Inside a ``shared.tracing`` span the record carries its W3C ``traceparent`` (header
    ``ce_traceparent``) unless ``extensions`` sets one explicitly.
    """
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "type": event_type,
        "source": source,
        "time": time or datetime.now(UTC),
        "datacontenttype": JSON,
    }
    if subject is not None:
        attributes["subject"] = subject
    if extensions:
        attributes.update(extensions)
    active = tracing.current()
    if active is not None and tracing.ATTRIBUTE not in attributes:
        attributes[tracing.ATTRIBUTE] = active.traceparent
    event = CloudEvent(attributes=attributes, data=data.model_dump_json().encode())
    message = ce_kafka.to_binary_event(event, key_mapper=lambda _e: key)
    raw_key = message.key.encode() if isinstance(message.key, str) else message.key
    return OutgoingRecord(
        topic=topic, key=raw_key, value=message.value, headers=list(message.headers.items())
    )


_CORE = {"id", "type", "source", "specversion", "time", "subject", "datacontenttype", "partitionkey"}


def decode(*, headers: Sequence[tuple[str, bytes]], key: bytes | None, value: bytes | None) -> Envelope:
    """Parse a binary-mode record and validate its data; raise DecodeError with a readable reason.

    The common case (CloudEvents 1.0, JSON data, RFC 3339 time) is read straight from the headers and
    validated from the raw JSON in one pass, four to five times faster than going through the SDK's
    event object; anything else takes the SDK path, which also words the errors.
    """
    header_map = dict(headers)
    if "ce_type" not in header_map:
        raise DecodeError("missing ce_type header: not a binary-mode CloudEvent")
    fast = _decode_common(header_map, key, value)
    if fast is not None:
        return fast
    return _decode_sdk(header_map, key, value)


def _decode_common(header_map: dict[str, bytes], key: bytes | None, value: bytes | None) -> Envelope | None:
    """The fast path; ``None`` hands the record to the SDK (unusual attributes, encodings or times)."""
    if header_map.get("ce_specversion") != b"1.0":
        return None
    content_type = header_map.get("content-type")
    if content_type is not None and not content_type.startswith(b"application/json"):
        return None
    try:
        event_id = header_map["ce_id"].decode()
        source = header_map["ce_source"].decode()
        event_type = header_map["ce_type"].decode()
        raw_time = header_map.get("ce_time")
        time = datetime.fromisoformat(raw_time.decode()) if raw_time is not None else None
        raw_subject = header_map.get("ce_subject")
        subject = raw_subject.decode() if raw_subject is not None else None
        extensions = {
            name[3:]: raw.decode()
            for name, raw in header_map.items()
            if name.startswith("ce_") and name[3:] not in _CORE
        }
    except (KeyError, UnicodeDecodeError, ValueError):
        return None
    if not event_id or not source or not event_type or (time is not None and time.tzinfo is None):
        return None
    model = EVENT_MODELS.get(event_type)
    if model is None:
        raise DecodeError(f"unknown event type {event_type!r}")
    try:
        data = model.model_validate_json(value or b"")
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid" or (not first["loc"] and first["type"].startswith("model_")):
            raise DecodeError("event data is not a JSON object") from exc
        where = ".".join(str(p) for p in first["loc"])
        raise DecodeError(f"invalid {event_type} data at {where}: {first['msg']}") from exc
    return Envelope(
        id=event_id,
        type=event_type,
        source=source,
        time=time,
        subject=subject,
        key=key.decode("utf-8", "replace") if key is not None else None,
        data=data,
        extensions=extensions,
    )


def _decode_sdk(header_map: dict[str, bytes], key: bytes | None, value: bytes | None) -> Envelope:
    try:
        message = ce_kafka.KafkaMessage(headers=header_map, key=key, value=value or b"")
        event = ce_kafka.from_binary_event(message)
    except Exception as exc:
        raise DecodeError(f"invalid CloudEvent: {exc}") from exc
    event_type = event.get_type()
    model = EVENT_MODELS.get(event_type)
    if model is None:
        raise DecodeError(f"unknown event type {event_type!r}")
    payload = event.get_data()
    if not isinstance(payload, dict):
        raise DecodeError("event data is not a JSON object")
    try:
        data = model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DecodeError(f"invalid {event_type} data at {where}: {first['msg']}") from exc
    attributes = event.get_attributes()
    return Envelope(
        id=event.get_id(),
        type=event_type,
        source=event.get_source(),
        time=event.get_time(),
        subject=event.get_subject(),
        key=key.decode("utf-8", "replace") if key is not None else None,
        data=data,
        extensions={k: v for k, v in attributes.items() if k not in _CORE},
    )
