"""The collector's Prometheus metrics; label values come from small fixed sets (no customer data)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Histogram

ACCEPTED = Counter(
    "csat_ratings_accepted_total", "Ratings acknowledged by the broker and answered 202", ["metric", "source"]
)
REJECTED = Counter(
    "csat_ratings_rejected_total", "Ratings refused, by reason and source", ["reason", "source"]
)
UNCHECKED = Counter(
    "csat_collector_idempotency_unchecked_total",
    "Keyed ratings published without an idempotency record because PostgreSQL was unavailable",
)

CLAIM_SECONDS = Histogram(
    "csat_collector_claim_duration_seconds",
    "Time of one idempotency claim statement (with grouping: one statement for many requests)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CLAIM_GROUP_SIZE = Histogram(
    "csat_collector_claim_statement_ids",
    "Rating ids per idempotency claim statement",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
)

#: Every reason label ``csat_ratings_rejected_total`` may carry.
REASONS = frozenset(
    {
        "invalid_score",
        "invalid_scale",
        "invalid_field",
        "idempotency_conflict",
        "in_progress",
        "unauthorized",
        "forbidden",
        "origin_not_allowed",
        "rate_limited",
        "body_too_large",
        "broker_unavailable",
        "database_unavailable",
        "link_invalid",
        "link_expired",
        "sms_signature",
        "sms_no_survey",
        "sms_unreadable",
    }
)

UNKNOWN_SOURCE = "unknown"

_accepted: dict[tuple[str, str], Any] = {}


def accept(metric: str, source: str, n: int = 1) -> None:
    """Count accepted ratings; each (metric, source) child is looked up once, not per request."""
    child = _accepted.get((metric, source))
    if child is None:
        child = _accepted[metric, source] = ACCEPTED.labels(metric, source)
    child.inc(n)


def reject(reason: str, source: str | None, n: int = 1) -> None:
    """Count refused ratings; an unexpected reason is folded so the label set stays bounded."""
    REJECTED.labels(reason if reason in REASONS else "invalid_field", source or UNKNOWN_SOURCE).inc(n)


def reason_for_field(field: str) -> str:
    """Validation failures by the kind of field, not the field's (client-chosen) name."""
    top = field.split(".")[-1].split("[")[0]
    if top == "score":
        return "invalid_score"
    if top in {"scale", "metric"}:
        return "invalid_scale"
    return "invalid_field"


INTERACTIONS = Counter(
    "csat_interactions_total",
    "Interactions posted, by outcome (accepted, replayed, conflict, in_progress) and source",
    ["outcome", "source"],
)
