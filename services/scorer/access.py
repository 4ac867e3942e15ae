"""Who sees which scores (pure): segment grants on filters and rows, distributions hidden in small groups.

A distribution (counts per score, NPS groups, the mean) over a handful of answers can reveal one
person's answer, so below ``CSAT_MIN_GROUP_SIZE`` answers only roles that see every segment get it;
everyone with ``scores:read`` still gets the score, its interval and ``responses``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from shared.identity.principal import Principal

#: Fields of a score body that break it down; ``None`` when hidden.
DISTRIBUTION_FIELDS = (
    "distribution",
    "mean",
    "positive",
    "neutral",
    "negative",
    "promoters",
    "passives",
    "detractors",
)


def conceal(body: dict[str, Any], principal: Principal, *, min_group: int) -> dict[str, Any]:
    """``body`` with its distribution removed when this caller may not see it at this size."""
    responses = body.get("responses")
    n = responses if isinstance(responses, int) else 0
    hidden = not principal.sees_distribution(n, min_group)
    if hidden:
        for name in DISTRIBUTION_FIELDS:
            if name in body:
                body[name] = None
    body["distribution_hidden"] = hidden
    return body


def visible_rows(rows: Iterable[dict[str, Any]], principal: Principal) -> list[dict[str, Any]]:
    """Rows of a breakdown or heat map whose segment a grant covers (all of them without grants)."""
    return [r for r in rows if principal.segment_allowed(_segment(r))]


def _segment(row: Mapping[str, Any]) -> Mapping[str, str]:
    segment = row.get("segment")
    return segment if isinstance(segment, Mapping) else {}
