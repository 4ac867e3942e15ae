"""What the Segments view shows (pure): the ranking, which segments are significantly below the whole,
the heat map's cells, and the CSV of exactly the rows shown.

"Significantly below the whole": the segment has at least the minimum sample and its whole 95 %
interval lies below the whole's point estimate (for CES: the share of easy answers, the figure its
interval is about). That is a one-sided test at 2.5 % of "this segment's true score is at least the
whole's", treating the whole as known, which it nearly is next to one segment (its n is much larger).
It reads on the page without statistics (the bar of the interval ends left of the whole's line), and
it is the figure the page already shows. With many segments a few are marked by chance: about one in
forty of those truly at the whole's level; the help text says so.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlencode

from services.console.scoreview import (
    FilterError,
    Filters,
    ResponseRate,
    as_float,
    as_int,
    mapping,
    response_rate,
)
from shared.identity.principal import Principal
from shared.scales import Metric

Sort = Literal["score", "responses", "ci_low", "ci_high", "delta"]
SORTS: tuple[Sort, ...] = ("score", "responses", "ci_low", "ci_high", "delta")
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_PAGE = 100_000
HEATMAP_ROWS = 30

_DIMENSION = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Whole:
    """The reference the rows are compared with: everything, or the segment drilled into."""

    segment: tuple[tuple[str, str], ...]
    value: float | None  # the figure compared (CSAT %, NPS, CES share of easy answers)
    responses: int


@dataclass(frozen=True, slots=True)
class Row:
    rank: int
    value: str  # the dimension's value (paris-1)
    segment: dict[str, str]  # every filter of the row (drill-downs: the parent's too)
    score: float | None
    responses: int
    ci_low: float | None
    ci_high: float | None
    compared: float | None  # the figure its interval is about (CES: share of easy answers)
    insufficient: bool
    previous: float | None
    delta: float | None
    significant_drop: bool
    below_whole: bool
    folded: bool  # the "other" value the cap folds new values into
    #: The segment's survey response rate as the scorer gives it (None: no invitation in the window).
    response_rate: ResponseRate | None = None


def compared_value(metric: Metric, body: Mapping[str, Any]) -> float | None:
    return as_float(body.get("positive_pct") if metric is Metric.CES else body.get("score"))


def whole_of(
    metric: Metric, segment: tuple[tuple[str, str], ...], body: Mapping[str, Any] | None
) -> Whole | None:
    if body is None:
        return None
    return Whole(segment=segment, value=compared_value(metric, body), responses=as_int(body.get("responses")))


def below_whole(*, ci_high: float | None, responses: int, whole: Whole | None, min_sample: int) -> bool:
    """The interval entirely below the whole's estimate, on at least the minimum sample."""
    if whole is None or whole.value is None or ci_high is None or responses < min_sample:
        return False
    return ci_high < whole.value


def rows_from(
    metric: Metric,
    found: Iterable[Mapping[str, Any]],
    *,
    dimension: str,
    whole: Whole | None,
    min_sample: int,
) -> list[Row]:
    """Breakdown rows (or heat-map cells of a drill-down) as the ranking shows them, unranked."""
    out = []
    for item in found:
        segment = mapping(item.get("segment"))
        value = segment.get(dimension)
        if not isinstance(value, str):
            continue
        responses = as_int(item.get("responses"))
        ci_high = as_float(item.get("ci_high"))
        out.append(
            Row(
                rank=0,
                value=value,
                segment={str(k): str(v) for k, v in segment.items()},
                score=as_float(item.get("score")),
                responses=responses,
                ci_low=as_float(item.get("ci_low")),
                ci_high=ci_high,
                compared=compared_value(metric, item),
                insufficient=item.get("insufficient") is not False,
                previous=as_float(item.get("previous")),
                delta=as_float(item.get("delta")),
                significant_drop=item.get("significant_drop") is True,
                below_whole=below_whole(
                    ci_high=ci_high, responses=responses, whole=whole, min_sample=min_sample
                ),
                folded=item.get("folded") is True,
                response_rate=response_rate(item),
            )
        )
    return out


def visible(rows: Iterable[Row], principal: Principal, *, dimension: str, drilled: bool) -> list[Row]:
    """The rows this person may see, as the scorer decides with the same token: a ranking's rows by
    the grants on its dimension, a drill-down's (already within a granted segment) by each row."""
    values = None if drilled else principal.visible_values(dimension)
    return [
        r for r in rows if (r.value in values if values is not None else principal.segment_allowed(r.segment))
    ]


def rank(rows: Sequence[Row], *, sort: Sort, descending: bool, limit: int) -> list[Row]:
    """As the scorer ranks: rows with a value to sort on first (ties: more answers first), numbered."""
    present = [r for r in rows if getattr(r, sort) is not None]
    missing = [r for r in rows if getattr(r, sort) is None]
    present.sort(
        key=lambda r: (getattr(r, sort), r.responses if descending else -r.responses), reverse=descending
    )
    missing.sort(key=lambda r: -r.responses)
    ordered = (present + missing)[:limit]
    return [replace(r, rank=i) for i, r in enumerate(ordered, start=1)]


# ---- heat map --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Cell:
    score: float | None
    responses: int
    insufficient: bool
    level: str  # a CSS class: the colour, always beside the value written in the cell

    @property
    def empty(self) -> bool:
        return self.responses == 0


@dataclass(frozen=True, slots=True)
class HeatRow:
    value: str
    cells: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class Heatmap:
    rows_by: str
    columns_by: str
    columns: tuple[str, ...]
    rows: tuple[HeatRow, ...]
    total_rows: int


#: Colour levels of a score (CSAT %, NPS) from the bands people know; the legend shows the same.
CSAT_LEVELS: tuple[tuple[float, str], ...] = (
    (85.0, "heat-5"),
    (80.0, "heat-4"),
    (70.0, "heat-3"),
    (50.0, "heat-2"),
    (float("-inf"), "heat-1"),
)
NPS_LEVELS: tuple[tuple[float, str], ...] = (
    (50.0, "heat-5"),
    (30.0, "heat-4"),
    (0.0, "heat-3"),
    (-30.0, "heat-2"),
    (float("-inf"), "heat-1"),
)


def level(metric: Metric, value: float | None, *, insufficient: bool) -> str:
    if value is None:
        return "heat-none"
    if insufficient:
        return "heat-few"
    levels = NPS_LEVELS if metric is Metric.NPS else CSAT_LEVELS
    return next(cls for bound, cls in levels if value >= bound)


def heatmap(metric: Metric, body: Mapping[str, Any], principal: Principal) -> Heatmap:
    """The scorer's heat map as a grid, each cell checked against the person's grants."""
    rows_by, columns_by = str(body.get("rows_by", "")), str(body.get("columns_by", ""))
    cells: dict[tuple[str, str], Cell] = {}
    for c in body.get("cells") or []:
        segment = mapping(c.get("segment"))
        if not principal.segment_allowed(segment):
            continue
        value = compared_value(metric, c)
        insufficient = c.get("insufficient") is not False
        cells[(str(c.get("row")), str(c.get("column")))] = Cell(
            score=value,
            responses=as_int(c.get("responses")),
            insufficient=insufficient,
            level=level(metric, value, insufficient=insufficient),
        )
    row_values = [str(r) for r in body.get("rows") or [] if any(k[0] == str(r) for k in cells)]
    columns = tuple(str(c) for c in body.get("columns") or [] if any(k[1] == str(c) for k in cells))
    empty = Cell(None, 0, True, "heat-none")
    rows = tuple(HeatRow(r, tuple(cells.get((r, c), empty) for c in columns)) for r in row_values)
    total = as_int(body.get("total_rows")) if principal.sees_all_segments else len(rows)
    return Heatmap(rows_by=rows_by, columns_by=columns_by, columns=columns, rows=rows, total_rows=total)


def across_default(by: str) -> str:
    """The heat map's second dimension when the address names none (the default combination's)."""
    return "store" if by == "channel" else "channel"


def parse_dimension(value: str | None, *, default: str) -> str | None:
    found = (value or default).strip()
    return found if _DIMENSION.match(found) else None


# ---- CSV -------------------------------------------------------------------------------------------
CSV_HEADER = (
    "rank",
    "dimension",
    "value",
    "segment",
    "metric",
    "window",
    "score",
    "responses",
    "ci_low",
    "ci_high",
    "insufficient",
    "previous",
    "delta",
    "significant_drop",
    "below_whole",
    "whole_score",
)

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_text(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula (values come from whoever posts ratings)."""
    return f"'{value}" if value.startswith(_FORMULA_START) else value


def _number(value: float | None) -> str:
    """Unformatted: a dot, no thousands separator, empty when absent (what spreadsheets parse)."""
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else repr(round(float(value), 4))


def csv_rows(
    rows: Sequence[Row], *, dimension: str, filters: Filters, whole: Whole | None
) -> list[list[str]]:
    """The header and one line per row shown, with the same numbers the page formats."""
    out = [list(CSV_HEADER)]
    for r in rows:
        segment = ";".join(f"{d}:{v}" for d, v in sorted(r.segment.items()))
        out.append(
            [
                str(r.rank),
                dimension,
                safe_text(r.value),
                safe_text(segment),
                filters.metric.value,
                filters.window,
                _number(r.score),
                str(r.responses),
                _number(r.ci_low),
                _number(r.ci_high),
                "true" if r.insufficient else "false",
                _number(r.previous),
                _number(r.delta),
                "true" if r.significant_drop else "false",
                "true" if r.below_whole else "false",
                _number(whole.value if whole else None),
            ]
        )
    return out


def csv_text(lines: Sequence[Sequence[str]]) -> str:
    """RFC 4180 (comma, CRLF, quotes where needed) behind a UTF-8 byte-order mark, which is what makes
    Excel read the file as UTF-8 (accented store names); other readers skip the mark."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(lines)
    return "\ufeff" + buffer.getvalue()


# ---- the page --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SegmentsQuery:
    """The Segments view's address: the ranking's dimension, filters, sort and size, the heat map's
    second dimension (``across``)."""

    filters: Filters
    by: str
    across: str
    sort: Sort
    descending: bool
    limit: int
    page: int = 1  # of the ranking, ``limit`` rows a page (the scorer pages it: ``offset``)

    @property
    def drilled(self) -> bool:
        return bool(self.filters.segment)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit

    def query(
        self,
        *,
        by: str | None = None,
        segment: Sequence[str] | None = None,
        sort: str | None = None,
        order: str | None = None,
        page: int | None = None,
    ) -> str:
        """This address's query string with some parts changed (``segment=[]``: no filter); the page
        only when asked (``page=q.page``): any other change starts from the first page."""
        items: list[tuple[str, str]] = [
            ("by", by or self.by),
            ("metric", self.filters.metric.value),
            ("window", self.filters.window),
        ]
        items += [("segment", s) for s in (self.filters.segment_params if segment is None else segment)]
        items += [("sort", sort or self.sort), ("order", order or ("desc" if self.descending else "asc"))]
        if self.across != across_default(by or self.by):
            items.append(("across", self.across))
        if self.limit != DEFAULT_LIMIT:
            items.append(("limit", str(self.limit)))
        if page is not None and page > 1:
            items.append(("page", str(page)))
        return urlencode(items)


def parse_query(
    filters: Filters,
    *,
    by: str | None,
    across: str | None,
    sort: str | None,
    order: str | None,
    limit: int | None,
    page: int | None = None,
) -> SegmentsQuery:
    dimension = parse_dimension(by, default="store")
    if dimension is None or dimension in filters.attributes:
        raise FilterError("by", "by names a dimension not already filtered on (store, channel...)")
    second = parse_dimension(across, default=across_default(dimension))
    if second is None:
        raise FilterError("across", "across names a dimension (channel)")
    chosen = sort or "score"
    if chosen not in SORTS:
        raise FilterError("sort", f"sort is one of {', '.join(SORTS)}")
    if order not in (None, "asc", "desc"):
        raise FilterError("order", "order is asc or desc")
    size = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= size <= MAX_LIMIT:
        raise FilterError("limit", f"limit is between 1 and {MAX_LIMIT}")
    number = 1 if page is None else page
    if not 1 <= number <= MAX_PAGE:
        raise FilterError("page", f"page is a whole number from 1 to {MAX_PAGE}")
    return SegmentsQuery(filters, dimension, second, chosen, order != "asc", size, number)


@dataclass(frozen=True, slots=True)
class SegmentsPage:
    query: SegmentsQuery
    rows: tuple[Row, ...]
    total: int  # rows this person may see before the limit
    whole: Whole | None  # None: the person may not read the whole (their grants)
    min_sample: int
    heatmap: Heatmap | None
    drill_unavailable: bool  # by x the filter is not a counted combination
    heatmap_unavailable: bool
    offset: int = 0  # rows of the ranking before this page

    @property
    def first(self) -> int:
        return self.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.offset + len(self.rows)

    @property
    def has_previous(self) -> bool:
        return self.offset > 0

    @property
    def has_next(self) -> bool:
        return self.offset + len(self.rows) < self.total

    @property
    def marked(self) -> int:
        return sum(1 for r in self.rows if r.below_whole)
