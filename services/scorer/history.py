"""A customer's history as the API shows it: a page of ratings, their trend, lowest and highest (pure)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.scorer.ports import HistoryCursor, HistoryRow, ScoreGroup
from services.scorer.trend import Point, trend
from shared.scales import SCALES, Metric


def encode_cursor(cursor: HistoryCursor) -> str:
    raw = f"{cursor.occurred_at.isoformat()}|{cursor.rating_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> HistoryCursor:
    """The cursor a previous page gave; ``ValueError`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, rating_id = raw.partition("|")
        parsed = datetime.fromisoformat(at)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("cursor is not one this API gave") from exc
    if parsed.tzinfo is None or not rating_id:
        raise ValueError("cursor is not one this API gave")
    return HistoryCursor(parsed, rating_id)


def normalized_pct(metric: str, scale: str, score: int) -> float | None:
    """A score on 0-100 whatever its scale, so ratings on different scales compare."""
    found = SCALES.get((Metric(metric), scale))
    return None if found is None else round(100 * found.normalized(score), 2)


def _extreme(value: float, g: ScoreGroup) -> dict[str, Any]:
    return {
        "metric": g.metric,
        "scale": g.scale,
        "score": g.score,
        "normalized": value,
        "times": g.n,
        "latest_rating_id": g.latest_rating_id,
        "latest_at": g.latest_at.isoformat(),
    }


def extremes(groups: Sequence[ScoreGroup]) -> dict[str, dict[str, Any] | None]:
    """The lowest and highest normalised scores given; ties go to the most recent."""
    ranked = [(v, g) for g in groups if (v := normalized_pct(g.metric, g.scale, g.score)) is not None]
    lowest = min(ranked, key=lambda x: (x[0], -x[1].latest_at.timestamp()), default=None)
    highest = max(ranked, key=lambda x: (x[0], x[1].latest_at.timestamp()), default=None)
    return {
        "lowest": None if lowest is None else _extreme(*lowest),
        "highest": None if highest is None else _extreme(*highest),
    }


def _rating(r: HistoryRow) -> dict[str, Any]:
    return {
        "rating_id": r.rating_id,
        "metric": r.metric,
        "scale": r.scale,
        "score": r.score,
        "normalized": normalized_pct(r.metric, r.scale, r.score),
        "sentiment": r.sentiment,
        "touchpoint": r.touchpoint,
        "comment": r.comment,
        "segment": r.segment,
        "occurred_at": r.occurred_at.isoformat(),
    }


def history_body(
    *,
    customer_id: str,
    metric: str | None,
    page: Sequence[HistoryRow],
    more: bool,
    recent: Sequence[HistoryRow],
    groups: Sequence[ScoreGroup],
) -> dict[str, Any]:
    """``page`` newest first (``more``: another page follows), the trend over ``recent`` (newest first)."""
    points = [
        Point(r.occurred_at, v)
        for r in reversed(recent)
        if (v := normalized_pct(r.metric, r.scale, r.score)) is not None
    ]
    tr = trend(points)
    last = page[-1] if more and page else None
    return {
        "customer_id": customer_id,
        "metric": metric,
        "total": sum(g.n for g in groups),
        "ratings": [_rating(r) for r in page],
        "next_cursor": None
        if last is None
        else encode_cursor(HistoryCursor(last.occurred_at, last.rating_id)),
        "trend": {
            "ratings": tr.ratings,
            "mean": tr.mean,
            "slope_per_30d": tr.slope_per_30d,
            "recent_mean": tr.recent_mean,
            "previous_mean": tr.previous_mean,
            "change": tr.change,
            "direction": tr.direction,
        },
        **extremes(groups),
    }
