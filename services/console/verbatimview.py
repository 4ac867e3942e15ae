"""The Verbatims view (pure): the address's filters, what the scorer is asked, the theme trend as a small
chart with its text, and the CSV of the comments shown.

Every filter lives in the address (``/verbatims?segment=store:paris-1&theme=delivery_time&sentiment=
negative&q=retard``), so a link can be shared; a person limited to some segments reads only comments
within them (``Principal.segment_allowed`` on the segment filter, checked before the scorer is asked).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

from services.console.scoreview import DEFAULT_WINDOW, WINDOWS, FilterError, parse_segment
from services.console.segmentview import csv_text, safe_text
from shared.scales import Metric

SENTIMENTS: tuple[str, ...] = ("negative", "neutral", "positive")
LANGUAGES: tuple[str, ...] = ("en", "fr")
PER_PAGE = 50
_WINDOW = re.compile(r"^[1-9]\d{0,3}[hdw]$")
_THEME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
TEXT_MAX = 200
#: The address's fields a refusal can name (``verbatims.bad_filter.<field>``).
FIELDS: tuple[str, ...] = (
    "segment",
    "metric",
    "window",
    "from",
    "to",
    "score_min",
    "score_max",
    "theme",
    "sentiment",
    "language",
    "q",
    "page",
    "other",
)
CSV_COLUMNS = (
    "occurred_at",
    "rating_id",
    "customer_id",
    "metric",
    "scale",
    "score",
    "segment",
    "touchpoint",
    "themes",
    "sentiment",
    "language",
    "comment",
)

__all__ = ["FilterError", "VerbatimsQuery", "csv_text", "parse_query"]


@dataclass(frozen=True, slots=True)
class VerbatimsQuery:
    segment: tuple[tuple[str, str], ...] = ()
    metric: Metric | None = None
    window: str = DEFAULT_WINDOW
    since: date | None = None
    until: date | None = None
    score_min: int | None = None
    score_max: int | None = None
    theme: str | None = None
    sentiment: str | None = None
    language: str | None = None
    text: str | None = None
    page: int = 1

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self.segment)

    @property
    def segment_params(self) -> list[str]:
        return [f"{d}:{v}" for d, v in self.segment]

    def pairs(self, **changes: Any) -> list[tuple[str, str]]:
        """The address's query (only what is set), with ``changes`` applied (``page=2``, ``theme=None``)."""
        values: dict[str, Any] = {
            "metric": self.metric.value if self.metric else None,
            "window": self.window
            if self.window != DEFAULT_WINDOW and not (self.since or self.until)
            else None,
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "theme": self.theme,
            "sentiment": self.sentiment,
            "language": self.language,
            "q": self.text,
            "page": self.page if self.page != 1 else None,
        }
        values.update(changes)
        out = [("segment", s) for s in self.segment_params]
        out += [(k, str(v)) for k, v in values.items() if v is not None and v != ""]
        return out

    def query(self, **changes: Any) -> str:
        return urlencode(self.pairs(**changes))

    def api_params(self, *, page: int | None = None, per_page: int = PER_PAGE) -> dict[str, Any]:
        """What the scorer's ``GET /v1/verbatims`` is asked."""
        params: dict[str, Any] = {
            "segment": self.segment_params,
            "page": page or self.page,
            "per_page": per_page,
        }
        for key, value in (
            ("metric", self.metric.value if self.metric else None),
            ("from", self.since.isoformat() if self.since else None),
            ("to", self.until.isoformat() if self.until else None),
            ("score_min", self.score_min),
            ("score_max", self.score_max),
            ("theme", self.theme),
            ("sentiment", self.sentiment),
            ("language", self.language),
            ("q", self.text),
        ):
            if value is not None:
                params[key] = value
        if not (self.since or self.until):
            params["window"] = self.window
        return params


def _optional_int(name: str, raw: str | None, *, low: int, high: int) -> int | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise FilterError(name, f"{name} is a whole number") from None
    if not low <= value <= high:
        raise FilterError(name, f"{name} is between {low} and {high}")
    return value


def _optional_date(name: str, raw: str | None) -> date | None:
    if raw is None or not raw.strip():
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        raise FilterError(name, f"{name} is a date (2026-12-31)") from None


def _choice(name: str, raw: str | None, allowed: Sequence[str]) -> str | None:
    value = (raw or "").strip().lower() or None
    if value is not None and value not in allowed:
        raise FilterError(name, f"{name} is one of {', '.join(allowed)}")
    return value


def parse_query(
    *,
    segment: Sequence[str] | None,
    metric: str | None,
    window: str | None,
    since: str | None,
    until: str | None,
    score_min: str | None,
    score_max: str | None,
    theme: str | None,
    sentiment: str | None,
    language: str | None,
    q: str | None,
    page: str | None,
) -> VerbatimsQuery:
    chosen: Metric | None = None
    if metric and metric.strip():
        try:
            chosen = Metric(metric.strip().lower())
        except ValueError:
            raise FilterError("metric", "metric is csat, nps or ces") from None
    span = (window or DEFAULT_WINDOW).strip()
    if not _WINDOW.match(span):
        raise FilterError("window", "a window looks like 24h, 7d or 30d")
    start, end = _optional_date("from", since), _optional_date("to", until)
    if start and end and start > end:
        raise FilterError("from", "from is on or before to")
    low = _optional_int("score_min", score_min, low=0, high=10)
    high = _optional_int("score_max", score_max, low=0, high=10)
    if low is not None and high is not None and low > high:
        raise FilterError("score_min", "score_min is at most score_max")
    picked = (theme or "").strip() or None
    if picked is not None and not _THEME.match(picked):
        raise FilterError("theme", "a theme is a name like delivery_time")
    text = " ".join((q or "").split()) or None
    if text is not None and len(text) > TEXT_MAX:
        raise FilterError("q", f"the search is {TEXT_MAX} characters at most")
    return VerbatimsQuery(
        segment=parse_segment(segment),
        metric=chosen,
        window=span,
        since=start,
        until=end,
        score_min=low,
        score_max=high,
        theme=picked,
        sentiment=_choice("sentiment", sentiment, SENTIMENTS),
        language=_choice("language", language, LANGUAGES),
        text=text,
        page=_optional_int("page", page, low=1, high=10_000) or 1,
    )


def when(text: Any) -> datetime | None:
    """An ISO time of the scorer's answer (aware), or None."""
    try:
        found = datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
    return found if found is not None and found.tzinfo is not None else None


def window_choices(current: str) -> tuple[str, ...]:
    return WINDOWS if current in WINDOWS else (*WINDOWS, current)


# ---- the theme trend --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    y: int
    height: int


@dataclass(frozen=True, slots=True)
class Spark:
    """A theme's counts per bucket as bars of an inline SVG (no script, no style attribute)."""

    width: int
    height: int
    bars: tuple[Bar, ...]
    counts: tuple[int, ...]


def spark(series: Sequence[Mapping[str, Any]], *, height: int = 24, bar: int = 4, gap: int = 1) -> Spark:
    counts = tuple(int(s.get("count") or 0) for s in series)
    top = max(counts, default=0) or 1
    bars = []
    for i, n in enumerate(counts):
        h = 0 if n == 0 else max(1, round(n / top * height))
        bars.append(Bar(x=i * (bar + gap), y=height - h, height=h))
    return Spark(
        width=max(1, len(counts) * (bar + gap) - gap), height=height, bars=tuple(bars), counts=counts
    )


# ---- CSV ---------------------------------------------------------------------------------------------
def csv_rows(items: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """The comments shown, in the page's order; fixed English column names, unformatted values."""
    lines = [list(CSV_COLUMNS)]
    for it in items:
        segment = it.get("segment") or {}
        lines.append(
            [
                str(it.get("occurred_at") or ""),
                safe_text(str(it.get("rating_id") or "")),
                safe_text(str(it.get("customer_id") or "")),
                str(it.get("metric") or ""),
                str(it.get("scale") or ""),
                str(it.get("score") if it.get("score") is not None else ""),
                safe_text(";".join(f"{k}:{v}" for k, v in sorted(segment.items()))),
                safe_text(str(it.get("touchpoint") or "")),
                ";".join(str(t) for t in it.get("themes") or []),
                str(it.get("sentiment") or ""),
                str(it.get("language") or ""),
                safe_text(str(it.get("comment") or "")),
            ]
        )
    return lines


def csv_file(items: Sequence[Mapping[str, Any]]) -> str:
    return csv_text(csv_rows(items))
