"""The verbatims API's answer (pure): stored comments tagged with themes, comment sentiment and language
(``shared.verbatims``, the taxonomy the actions service routes by), filtered, paged, with theme counts
and their trend.

SQL narrows by time, metric, segment, score and text and returns the newest ``scan_limit`` comments;
themes, sentiment and language are read from each comment's text here (they are not stored), so a
range with more comments than that answers on the newest ones and says so (``truncated``).
Theme counts are taken over every filter except ``theme`` itself (picking a theme leaves the others'
counts visible); ``previous`` is the same count over the range of equal length just before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from services.scorer.ports import CommentRow
from shared.verbatims import LANGUAGES, Analysis, Taxonomy

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
MAX_RANGE = timedelta(days=400)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)


class VerbatimFilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Range:
    start: datetime
    end: datetime

    @property
    def previous(self) -> Range:
        return Range(self.start - (self.end - self.start), self.start)

    @property
    def step(self) -> timedelta:
        """Daily buckets up to 31 days, weekly beyond."""
        return DAY if self.end - self.start <= timedelta(days=31) else WEEK


def date_range(*, window: timedelta, since: date | None, until: date | None, now: datetime) -> Range:
    """``from``/``to`` (whole days, ``to`` included, UTC) when given, else the rolling ``window`` to now."""
    if since is None and until is None:
        return Range(now - window, now)
    end = datetime.combine(until, time(0), tzinfo=UTC) + DAY if until is not None else now
    start = datetime.combine(since, time(0), tzinfo=UTC) if since is not None else end - window
    if start >= end:
        raise VerbatimFilterError("from", "from must be on or before to")
    if end - start > MAX_RANGE:
        raise VerbatimFilterError("from", f"the range may span {MAX_RANGE.days} days at most")
    return Range(start, end)


@dataclass(frozen=True, slots=True)
class TextFilters:
    """What is read from the comment's text: applied after SQL, on the scanned comments."""

    theme: str | None = None
    sentiment: str | None = None
    language: str | None = None


def check_text_filters(f: TextFilters, taxonomy: Taxonomy) -> None:
    if f.theme is not None and f.theme not in taxonomy.theme_ids:
        raise VerbatimFilterError("theme", f"unknown theme; one of {', '.join(taxonomy.theme_ids)}")
    if f.sentiment is not None and f.sentiment not in SENTIMENTS:
        raise VerbatimFilterError("sentiment", f"one of {', '.join(SENTIMENTS)}")
    if f.language is not None and f.language not in LANGUAGES:
        raise VerbatimFilterError("language", f"one of {', '.join(LANGUAGES)}")


@dataclass(frozen=True, slots=True)
class Tagged:
    row: CommentRow
    analysis: Analysis


def tag(rows: Sequence[CommentRow], taxonomy: Taxonomy) -> list[Tagged]:
    return [Tagged(r, taxonomy.analyze(r.comment)) for r in rows]


def _keeps(t: Tagged, f: TextFilters, *, with_theme: bool) -> bool:
    a = t.analysis
    if f.sentiment is not None and a.sentiment != f.sentiment:
        return False
    if f.language is not None and a.language != f.language:
        return False
    return not (with_theme and f.theme is not None and f.theme not in a.themes)


def _bucket(at: datetime, r: Range) -> int:
    return int((at - r.start) / r.step)


def theme_counts(
    current: Sequence[Tagged], previous: Sequence[Tagged], f: TextFilters, taxonomy: Taxonomy, r: Range
) -> list[dict[str, Any]]:
    """Every theme of the taxonomy (most frequent first) with its count, share, change and series."""
    now_rows = [t for t in current if _keeps(t, f, with_theme=False)]
    before_rows = [t for t in previous if _keeps(t, f, with_theme=False)]
    buckets = max(1, -(-int((r.end - r.start).total_seconds()) // int(r.step.total_seconds())))
    out: list[dict[str, Any]] = []
    for theme in taxonomy.theme_ids:
        series = [0] * buckets
        count = 0
        for t in now_rows:
            if theme in t.analysis.themes:
                count += 1
                series[min(_bucket(t.row.occurred_at, r), buckets - 1)] += 1
        before = sum(1 for t in before_rows if theme in t.analysis.themes)
        out.append(
            {
                "theme": theme,
                "count": count,
                "share": round(count / len(now_rows), 4) if now_rows else None,
                "previous": before,
                "delta": count - before,
                "series": [
                    {"start": (r.start + i * r.step).isoformat(), "count": n} for i, n in enumerate(series)
                ],
            }
        )
    out.sort(key=lambda x: (-int(x["count"]), str(x["theme"])))
    return out


def item(t: Tagged) -> dict[str, Any]:
    r, a = t.row, t.analysis
    return {
        "rating_id": r.rating_id,
        "customer_id": r.customer_id,
        "metric": r.metric,
        "scale": r.scale,
        "score": r.score,
        "segment": r.segment,
        "touchpoint": r.touchpoint,
        "comment": r.comment,
        "themes": list(a.themes),
        "sentiment": a.sentiment,
        "language": a.language,
        "occurred_at": r.occurred_at.isoformat(),
    }


def body(
    *,
    current: Sequence[CommentRow],
    previous: Sequence[CommentRow],
    taxonomy: Taxonomy,
    filters: TextFilters,
    r: Range,
    page: int,
    per_page: int,
    scan_limit: int,
    echo: Mapping[str, Any],
) -> dict[str, Any]:
    tagged_now = tag(current, taxonomy)
    kept = [t for t in tagged_now if _keeps(t, filters, with_theme=True)]
    first = (page - 1) * per_page
    return {
        **echo,
        "from": r.start.isoformat(),
        "to": r.end.isoformat(),
        "step": "day" if r.step == DAY else "week",
        "total": len(kept),
        "page": page,
        "per_page": per_page,
        "pages": max(1, -(-len(kept) // per_page)),
        "scanned": len(current),
        "truncated": len(current) >= scan_limit,
        "items": [item(t) for t in kept[first : first + per_page]],
        "themes": theme_counts(tagged_now, tag(previous, taxonomy), filters, taxonomy, r),
    }
