"""What the Scores view shows, decided from the scorer's answers (pure): filters, tiles, distribution, trend.

The scorer's JSON goes in; small frozen dataclasses come out, which the templates only lay out and
format. Every decision a person reads (not enough answers, significant or not, hidden distribution,
which interval goes with which figure) is made here, where unit tests can see it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode

from services.console.i18n import Translator
from shared.identity.principal import Principal
from shared.scales import SCALES, Metric, Scale

METRICS: tuple[Metric, ...] = (Metric.CSAT, Metric.NPS, Metric.CES)
WINDOWS: tuple[str, ...] = ("24h", "7d", "30d", "90d", "365d")
DEFAULT_WINDOW = "30d"
MAX_FILTERS = 4

_WINDOW = re.compile(r"^[1-9]\d{0,3}[mhdw]$")
_DIMENSION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_VALUE_MAX = 200


class FilterError(ValueError):
    """A filter in the address the view cannot use; ``field`` names the query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Filters:
    """A view's address: which metric is in focus, the window and the segment (``store:paris-1``)."""

    metric: Metric
    window: str
    segment: tuple[tuple[str, str], ...]  # sorted (dimension, value) pairs

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self.segment)

    @property
    def segment_params(self) -> list[str]:
        return [f"{d}:{v}" for d, v in self.segment]

    def query(self, **changes: str) -> str:
        """This address's query string, with ``changes`` (``metric=nps``) applied."""
        items: list[tuple[str, str]] = [
            ("metric", changes.get("metric", self.metric.value)),
            ("window", changes.get("window", self.window)),
        ]
        items += [("segment", s) for s in self.segment_params]
        return urlencode(items)


def parse_segment(params: Sequence[str] | None) -> tuple[tuple[str, str], ...]:
    """``["store:paris-1"]`` -> ``(("store", "paris-1"),)``; refuses what the scorer would refuse."""
    pairs: dict[str, str] = {}
    for raw in params or []:
        if not raw:
            continue
        dim, sep, value = raw.strip().partition(":")
        if not sep or not _DIMENSION.match(dim) or not value or len(value) > _VALUE_MAX:
            raise FilterError("segment", "a segment looks like dimension:value (store:paris-1)")
        if dim in pairs:
            raise FilterError("segment", f"the dimension {dim} is given twice")
        pairs[dim] = value
    if len(pairs) > MAX_FILTERS:
        raise FilterError("segment", f"at most {MAX_FILTERS} segment filters")
    return tuple(sorted(pairs.items()))


def parse_filters(*, metric: str | None, window: str | None, segment: Sequence[str] | None) -> Filters:
    try:
        chosen = Metric((metric or Metric.CSAT.value).strip().lower())
    except ValueError:
        raise FilterError("metric", "metric is csat, nps or ces") from None
    span = (window or DEFAULT_WINDOW).strip()
    if not _WINDOW.match(span):
        raise FilterError("window", "a window looks like 24h, 7d or 30d")
    return Filters(metric=chosen, window=span, segment=parse_segment(segment))


def default_segment(principal: Principal) -> tuple[tuple[str, str], ...] | None:
    """Where a person limited to some segments lands when the address names none: their first grant
    (None: they see the whole, or have no segment at all)."""
    if principal.segments is None or not principal.segments:
        return None
    return min(principal.segments).pairs


def window_choices(current: str) -> tuple[str, ...]:
    return WINDOWS if current in WINDOWS else (*WINDOWS, current)


# ---- tiles -------------------------------------------------------------------------------------------
class TileState(StrEnum):
    EMPTY = "empty"  # no answer in the window
    INSUFFICIENT = "insufficient"  # fewer than the minimum sample: shown, flagged, not compared
    OK = "ok"


class Verdict(StrEnum):
    DROP = "drop"  # significantly worse (one-sided test at the scorer's alpha)
    RISE = "rise"  # significantly better (the mirror test)
    NONE = "none"  # a difference the test cannot tell from noise
    UNTESTABLE = "untestable"  # a window below the minimum sample, or no test possible


@dataclass(frozen=True, slots=True)
class Change:
    """This window against an earlier one (previous period, or a year before)."""

    earlier: float | None
    earlier_responses: int
    delta: float | None
    verdict: Verdict
    p_value_drop: float | None


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    count: int
    share: float  # 0..1 of the scale's answers


@dataclass(frozen=True, slots=True)
class ScaleBars:
    scale: str
    bars: tuple[Bar, ...]
    total: int


@dataclass(frozen=True, slots=True)
class NpsGroups:
    promoters: int
    passives: int
    detractors: int

    @property
    def total(self) -> int:
        return self.promoters + self.passives + self.detractors

    def share(self, count: int) -> float:
        return count / self.total if self.total else 0.0


@dataclass(frozen=True, slots=True)
class Distribution:
    """Counts per score (and NPS groups), or ``hidden`` when the scorer withheld them."""

    hidden: bool
    scales: tuple[ScaleBars, ...] = ()
    nps: NpsGroups | None = None


@dataclass(frozen=True, slots=True)
class ResponseRate:
    """Survey invitations answered; present only once the scorer reports it (surveys)."""

    rate: float  # 0..1: answered / invited
    ci_low: float | None
    ci_high: float | None
    invited: int | None
    answered: int | None
    low: bool
    threshold: float | None = None  # the rate under which ``low`` is set (the scorer's setting)
    completion: Completion | None = None  # answers with a comment / answers


@dataclass(frozen=True, slots=True)
class Completion:
    """Survey answers that came with a comment (the follow-up question), of all answers."""

    rate: float
    ci_low: float | None
    ci_high: float | None
    commented: int
    answered: int


def completion(body: Mapping[str, Any]) -> Completion | None:
    raw = body.get("completion_rate")
    if not isinstance(raw, dict) or as_float(raw.get("rate")) is None:
        return None
    return Completion(
        rate=float(raw["rate"]),
        ci_low=as_float(raw.get("ci_low")),
        ci_high=as_float(raw.get("ci_high")),
        commented=as_int(raw.get("commented")),
        answered=as_int(raw.get("answered")),
    )


#: The scorer's drift detector states the Scores view words (others are not shown).
DRIFT_STATUSES = ("warming_up", "too_small", "monitoring", "drop_detected", "not_evaluated", "not_monitored")


@dataclass(frozen=True, slots=True)
class Drift:
    """The scorer's drift detector on this segment: the alerts' judge, unlike the one-look comparisons."""

    status: str
    since: datetime | None
    drop: float | None  # size of the last drop detected, in points (CES: of ease)
    drop_low: float | None
    drop_high: float | None


def drift(body: Mapping[str, Any]) -> Drift | None:
    raw = mapping(body.get("drift"))
    status = raw.get("status")
    if status not in DRIFT_STATUSES:
        return None
    detected = mapping(raw.get("drop"))
    return Drift(
        status=str(status),
        since=_time(raw.get("since")) if status == "drop_detected" else None,
        drop=as_float(detected.get("size")),
        drop_low=as_float(detected.get("ci_low")),
        drop_high=as_float(detected.get("ci_high")),
    )


@dataclass(frozen=True, slots=True)
class Tile:
    metric: Metric
    state: TileState
    score: float | None  # CSAT %, NPS, CES mean ease (1-7)
    responses: int
    min_sample: int
    ci_low: float | None  # CSAT and NPS: of the score; CES: of the share of easy answers
    ci_high: float | None
    easy_pct: float | None  # CES: share of easy answers (5-7), what its interval is about
    band: str | None
    benchmark: float | None
    benchmark_industry: str | None
    vs_benchmark: float | None
    previous: Change
    year_ago: Change
    distribution: Distribution
    response_rate: ResponseRate | None
    drift: Drift | None
    period_from: datetime | None
    period_to: datetime | None


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def as_int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def tile_state(*, responses: int, insufficient: bool) -> TileState:
    if responses == 0:
        return TileState.EMPTY
    return TileState.INSUFFICIENT if insufficient else TileState.OK


def verdict(
    *,
    significant_drop: Any,
    significant_rise: Any,
    responses: int,
    earlier_responses: int,
    min_sample: int,
    z: Any,
) -> Verdict:
    """The scorer's tests read for a person: untestable below the minimum sample on either side."""
    if z is None or responses < min_sample or earlier_responses < min_sample:
        return Verdict.UNTESTABLE
    if significant_drop is True:
        return Verdict.DROP
    if significant_rise is True:
        return Verdict.RISE
    return Verdict.NONE


def _change(
    body: Mapping[str, Any], earlier: Mapping[str, Any], *, earlier_score: str, earlier_n: str
) -> Change:
    responses, min_sample = as_int(body.get("responses")), as_int(body.get("min_sample")) or 30
    n = as_int(earlier.get(earlier_n))
    return Change(
        earlier=as_float(earlier.get(earlier_score)),
        earlier_responses=n,
        delta=as_float(earlier.get("delta")),
        verdict=verdict(
            significant_drop=earlier.get("significant_drop"),
            significant_rise=earlier.get("significant_rise"),
            responses=responses,
            earlier_responses=n,
            min_sample=min_sample,
            z=earlier.get("z"),
        ),
        p_value_drop=as_float(earlier.get("p_value_drop")),
    )


def distribution(metric: Metric, body: Mapping[str, Any]) -> Distribution:
    """Bars per score of each scale answered (every score of the scale, zeros included)."""
    raw = body.get("distribution")
    if body.get("distribution_hidden") is True or (
        not isinstance(raw, dict) and as_int(body.get("responses"))
    ):
        return Distribution(hidden=True)
    scales: list[ScaleBars] = []
    for name, counts in sorted((raw or {}).items()):
        scale: Scale | None = SCALES.get((metric, name))
        if scale is None or not isinstance(counts, dict):
            continue
        total = sum(as_int(c) for c in counts.values())
        bars = tuple(
            Bar(
                label=str(s),
                count=as_int(counts.get(str(s))),
                share=as_int(counts.get(str(s))) / total if total else 0,
            )
            for s in scale.scores()
        )
        scales.append(ScaleBars(scale=name, bars=bars, total=total))
    nps = None
    if metric is Metric.NPS:
        nps = NpsGroups(
            as_int(body.get("promoters")), as_int(body.get("passives")), as_int(body.get("detractors"))
        )
    return Distribution(hidden=False, scales=tuple(scales), nps=nps)


def response_rate(body: Mapping[str, Any]) -> ResponseRate | None:
    """The surveys' response rate when the scorer reports one (``response_rate``: a ratio or an object
    with ``rate``, ``ci_low``, ``ci_high`` as ratios, ``invited`` (``sent`` before), ``answered``,
    ``low``, ``threshold``); else None."""
    raw = body.get("response_rate")
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return ResponseRate(float(raw), None, None, None, None, bool(body.get("low_response")))
    if not isinstance(raw, dict) or as_float(raw.get("rate")) is None:
        return None
    invited = raw.get("invited", raw.get("sent"))
    return ResponseRate(
        rate=float(raw["rate"]),
        ci_low=as_float(raw.get("ci_low")),
        ci_high=as_float(raw.get("ci_high")),
        invited=as_int(invited) if invited is not None else None,
        answered=as_int(raw["answered"]) if "answered" in raw else None,
        low=bool(raw.get("low") or body.get("low_response")),
        threshold=as_float(raw.get("threshold")),
        completion=completion(body),
    )


def tile(metric: Metric, body: Mapping[str, Any]) -> Tile:
    """One metric's tile from ``GET /v1/scores``."""
    responses = as_int(body.get("responses"))
    benchmark = mapping(body.get("benchmark"))
    year = mapping(body.get("year_ago"))
    return Tile(
        metric=metric,
        state=tile_state(responses=responses, insufficient=body.get("insufficient") is not False),
        score=as_float(body.get("score")),
        responses=responses,
        min_sample=as_int(body.get("min_sample")) or 30,
        ci_low=as_float(body.get("ci_low")),
        ci_high=as_float(body.get("ci_high")),
        easy_pct=as_float(body.get("positive_pct")) if metric is Metric.CES else None,
        band=body.get("band") if isinstance(body.get("band"), str) else None,
        benchmark=as_float(benchmark.get("csat")),
        benchmark_industry=benchmark.get("industry") if isinstance(benchmark.get("industry"), str) else None,
        vs_benchmark=as_float(body.get("vs_benchmark")),
        previous=_change(body, body, earlier_score="previous", earlier_n="previous_responses"),
        year_ago=_change(body, year, earlier_score="score", earlier_n="responses"),
        distribution=distribution(metric, body),
        response_rate=response_rate(body),
        drift=drift(body),
        period_from=_time(body.get("from")),
        period_to=_time(body.get("to")),
    )


# ---- trend -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TrendPoint:
    start: datetime
    end: datetime
    value: float | None  # CSAT %, NPS, CES share of easy answers (%), the figure its interval is about
    ci_low: float | None
    ci_high: float | None
    responses: int
    insufficient: bool


def trend_value(metric: Metric, point: Mapping[str, Any]) -> float | None:
    """CES is charted as its share of easy answers: the figure its interval belongs to."""
    return as_float(point.get("positive_pct") if metric is Metric.CES else point.get("score"))


def trend(metric: Metric, series: Mapping[str, Any]) -> tuple[TrendPoint, ...]:
    points = []
    for p in series.get("points") or []:
        start, end = _time(p.get("from")), _time(p.get("to"))
        if start is None or end is None:
            continue
        points.append(
            TrendPoint(
                start=start,
                end=end,
                value=trend_value(metric, p),
                ci_low=as_float(p.get("ci_low")),
                ci_high=as_float(p.get("ci_high")),
                responses=as_int(p.get("responses")),
                insufficient=p.get("insufficient") is not False,
            )
        )
    return tuple(points)


def chart_data(
    metric: Metric, points: Sequence[TrendPoint], *, label: str, band_label: str, time_label: str = ""
) -> dict[str, Any]:
    """What ``static/scores.js`` draws with uPlot: times (Unix seconds, each step's end), the value and
    its interval (null where a step has no answer), the axis range of the metric."""
    return {
        "metric": metric.value,
        "label": label,
        "band_label": band_label,
        "time_label": time_label,
        "x": [int(p.end.timestamp()) for p in points],
        "y": [p.value if p.responses else None for p in points],
        "lo": [p.ci_low if p.responses else None for p in points],
        "hi": [p.ci_high if p.responses else None for p in points],
        "n": [p.responses for p in points],
        "range": [-100, 100] if metric is Metric.NPS else [0, 100],
    }


# ---- formats (numbers per locale) --------------------------------------------------------------------
def score_text(tr: Translator, metric: Metric, value: float | None) -> str:
    """CSAT ``70.0%`` / ``70,0 %``, NPS ``+12.5``, CES ``5.20`` (mean ease on 1-7)."""
    if value is None:
        return "—"
    if metric is Metric.CSAT:
        return tr.percent(value / 100)
    if metric is Metric.NPS:
        return signed(tr.number(value, digits=1), value)
    return tr.number(value, digits=2)


def percent_text(tr: Translator, value: float | None) -> str:
    """A figure the scorer gives in percent (0-100) as the locale writes percentages."""
    return "—" if value is None else tr.percent(value / 100)


def interval_text(tr: Translator, metric: Metric, low: float | None, high: float | None) -> str:
    """``67.1% to 72.8%`` / ``67,1 % à 72,8 %``: words, which screen readers say as they read."""
    if low is None or high is None:
        return "—"
    if metric is Metric.NPS:
        ends = (signed(tr.number(low, digits=1), low), signed(tr.number(high, digits=1), high))
    else:
        ends = (tr.percent(low / 100), tr.percent(high / 100))
    return tr.t("scores.range", low=ends[0], high=ends[1])


def delta_text(tr: Translator, metric: Metric, delta: float | None) -> str:
    """A change in points (CSAT, NPS) or in mean ease (CES), always with its sign."""
    if delta is None:
        return "—"
    digits = 2 if metric is Metric.CES else 1
    number = signed(tr.number(delta, digits=digits), delta)
    return number if metric is Metric.CES else tr.t("scores.points", value=number)


def signed(text: str, value: float) -> str:
    return f"+{text}" if value > 0 else text


# ---- the whole panel ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Panel:
    """Everything the Scores view shows for one address; live updates re-render only this."""

    filters: Filters
    tiles: tuple[Tile, ...]
    focus: Tile  # the metric whose distribution and trend are shown
    trend: tuple[TrendPoint, ...]
    chart: dict[str, Any]
    response_rate: ResponseRate | None  # the first metric's that has one (surveys)


def panel(
    filters: Filters,
    bodies: Mapping[Metric, Mapping[str, Any]],
    series: Mapping[str, Any],
    *,
    chart_label: str,
    band_label: str,
    time_label: str = "",
) -> Panel:
    tiles = tuple(tile(m, bodies.get(m, {})) for m in METRICS)
    focus = next(t for t in tiles if t.metric is filters.metric)
    points = trend(filters.metric, series)
    return Panel(
        filters=filters,
        tiles=tiles,
        focus=focus,
        trend=points,
        chart=chart_data(
            filters.metric, points, label=chart_label, band_label=band_label, time_label=time_label
        ),
        response_rate=next((t.response_rate for t in tiles if t.response_rate is not None), None),
    )
