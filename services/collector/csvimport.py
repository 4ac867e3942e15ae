"""Historical import: CSV rows -> rating payloads, checked by the API's own validation (pure, no I/O).

Columns: ``rating_id, metric, scale, score, customer_id, customer_email, customer_phone,
customer_locale, customer_timezone, segment.<name>, touchpoint, comment, account_id, account_tier,
account_value, occurred_at, consent_contact, consent_review, survey_id``. Rows without a
``rating_id`` get one derived from their content, so re-running an import never counts a row twice.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import orjson
from pydantic import ValidationError

from services.collector.domain import RatingIn, RatingRejected, normalize

SIMPLE = {"rating_id", "metric", "scale", "score", "touchpoint", "comment", "occurred_at", "survey_id"}
CUSTOMER = {"customer_id", "customer_email", "customer_phone", "customer_locale", "customer_timezone"}
ACCOUNT = {"account_id", "account_tier", "account_value"}
CONSENT = {"consent_contact", "consent_review"}
KNOWN = SIMPLE | CUSTOMER | ACCOUNT | CONSENT
_TRUE = {"1", "true", "yes", "y", "oui", "x"}
_FALSE = {"0", "false", "no", "n", "non", ""}


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    payload: dict[str, Any]


def plan_columns(header: Iterable[str], renames: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """Map each CSV column to a rating field; returns (mapping, unknown columns)."""
    mapping: dict[str, str] = {}
    unknown: list[str] = []
    for column in header:
        name = renames.get(column, column).strip()
        key = name.lower()
        if key in KNOWN or (key.startswith("segment.") and len(key) > len("segment.")):
            mapping[column] = key
        elif name == "":
            continue
        else:
            unknown.append(column)
    return mapping, unknown


def _flag(value: str, field: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RatingRejected(field, f"{value!r} is not yes/no")


def _when(value: str, default_tz: tzinfo | None) -> str:
    """ISO 8601 as is; a naive timestamp gets ``default_tz`` when one was given."""
    text = value.strip().replace(" ", "T", 1) if "T" not in value else value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return value
    if parsed.tzinfo is None and default_tz is not None:
        parsed = parsed.replace(tzinfo=default_tz)
    return parsed.isoformat()


def to_payload(
    record: Mapping[str, str], mapping: Mapping[str, str], *, default_tz: tzinfo | None
) -> dict[str, Any]:
    """One CSV record as the JSON body ``POST /v1/ratings`` takes; empty cells are left out."""
    out: dict[str, Any] = {}
    customer: dict[str, Any] = {}
    account: dict[str, Any] = {}
    consent: dict[str, Any] = {}
    segment: dict[str, str] = {}
    for column, field in mapping.items():
        value = (record.get(column) or "").strip()
        if field in CONSENT:
            consent[field.removeprefix("consent_")] = _flag(value, field)
            continue
        if value == "":
            continue
        if field == "occurred_at":
            out[field] = _when(value, default_tz)
        elif field in SIMPLE:
            out[field] = value
        elif field in CUSTOMER:
            customer[field.removeprefix("customer_")] = value
        elif field in ACCOUNT:
            account[field.removeprefix("account_")] = value
        else:
            segment[field.removeprefix("segment.")] = value
    if customer:
        out["customer"] = customer
    if account:
        out["account"] = account
    if consent:
        out["consent"] = consent
    if segment:
        out["segment"] = segment
    return out


def derive_ids(rows: Iterable[Row], *, seen: Counter[bytes] | None = None) -> None:
    """Give rows without a rating_id a stable one: content hash plus the row's rank among equal rows.

    Pass the same ``seen`` for every chunk of one file so equal rows in different chunks differ.
    """
    seen = Counter() if seen is None else seen
    for row in rows:
        if row.payload.get("rating_id"):
            continue
        content = orjson.dumps(row.payload, option=orjson.OPT_SORT_KEYS)
        seen[content] += 1
        digest = hashlib.sha256(content + f"#{seen[content]}".encode()).hexdigest()
        row.payload["rating_id"] = f"import-{digest[:32]}"


def check(row: Row, *, now: datetime | None = None) -> list[RowError]:
    """The API's validation, run locally: the same model and normalisation."""
    try:
        rating = RatingIn.model_validate(row.payload)
        normalize(rating, received_at=now or datetime.now(UTC))
    except ValidationError as exc:
        return [
            RowError(row.line, _column(e["loc"]), str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]
    except RatingRejected as exc:
        return [RowError(row.line, exc.field, exc.message)]
    return []


def _column(loc: tuple[int | str, ...]) -> str:
    """Pydantic's location back to the CSV column name (``customer.id`` -> ``customer_id``)."""
    parts = [str(p) for p in loc]
    if not parts:
        return "row"
    if parts[0] in {"customer", "account", "consent"} and len(parts) > 1:
        return f"{parts[0]}_{parts[1]}"
    if parts[0] == "segment" and len(parts) > 1:
        return f"segment.{parts[1]}"
    return parts[0]


def column_for(field: str) -> str:
    """An API error field (``ratings[3].customer.id``) as a CSV column name."""
    tail = field.split("].", 1)[-1] if "]." in field else field
    return _column(tuple(tail.split(".")))
