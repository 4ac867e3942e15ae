"""Two-dimension breakdowns (store x channel) from a combination's counters: planning and rendering, pure.

A heat map needs the counters of a configured combination (``CSAT_COMBINATIONS``): one counter per
(store, channel) pair, each answered exactly as a breakdown row (score, n, interval, change). A filter
on one of its two dimensions (``store:paris-1``) reads only that store's pairs, which is what a
drill-down (store -> channel) needs, without reading every other store's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.scorer import domain


class HeatmapError(ValueError):
    """A request the counters cannot answer; ``field`` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class HeatmapPlan:
    """Which pairs to read: every pair of ``dimensions``, or only those with ``fixed`` values."""

    rows_by: str
    columns_by: str
    dimensions: tuple[str, ...]  # the combination, sorted as its counter keys are
    fixed: dict[str, str]

    @property
    def free(self) -> tuple[str, ...]:
        """The dimensions whose values come from the counters (not fixed by the filter)."""
        return tuple(d for d in self.dimensions if d not in self.fixed)

    def keys_for(self, values: Sequence[str]) -> list[str]:
        """The pair keys of each value of the one free dimension, the other fixed."""
        (free,) = self.free
        return [domain.segment_key({**self.fixed, free: value}) for value in values]


def plan(
    *, rows_by: str, columns_by: str, filters: Mapping[str, str], combos: Sequence[tuple[str, ...]]
) -> HeatmapPlan:
    """Check the two dimensions form a counted combination and the filter stays within them."""
    rows_by, columns_by = rows_by.strip(), columns_by.strip()
    if not rows_by:
        raise HeatmapError("rows", "rows must name a dimension (store)")
    if not columns_by or columns_by == rows_by:
        raise HeatmapError("columns", "columns must name a dimension other than rows (channel)")
    dims = tuple(sorted((rows_by, columns_by)))
    if dims not in combos:
        counted = ", ".join(" x ".join(c) for c in combos if len(c) == 2) or "none"
        raise HeatmapError(
            "columns",
            f"{rows_by} x {columns_by} is not a counted combination (CSAT_COMBINATIONS; counted: {counted})",
        )
    outside = sorted(set(filters) - set(dims))
    if outside:
        raise HeatmapError(
            "segment", f"segment may only filter on {rows_by} or {columns_by}, not {outside[0]}"
        )
    return HeatmapPlan(rows_by, columns_by, dims, dict(filters))


def ordered_by_responses(cells: Sequence[Mapping[str, Any]], field: str) -> list[str]:
    """The distinct values of ``field`` (row or column) by their answers across cells, most first."""
    totals: dict[str, int] = {}
    for cell in cells:
        totals[cell[field]] = totals.get(cell[field], 0) + int(cell["responses"])
    return sorted(totals, key=lambda v: (-totals[v], v))


@dataclass(frozen=True, slots=True)
class Kept:
    """The pairs a grid will show, chosen before any of them is scored, and how many rows and columns
    there were in all."""

    keys: frozenset[str]
    rows: tuple[str, ...]  # kept, in the grid's order (by answers across every visible pair)
    columns: tuple[str, ...]
    total_rows: int
    total_columns: int


def keep(
    responses: Mapping[str, int],
    heat: HeatmapPlan,
    *,
    limit_rows: int,
    limit_columns: int,
    min_responses: int,
    visible: Callable[[Mapping[str, str]], bool],
) -> Kept:
    """The pair keys in the rows and columns ``grid`` keeps, from each pair's current answers alone.

    ``grid`` keeps the rows and columns with the most answers among the cells shown (a pair with at
    least ``min_responses``, and one, answers, that the caller may see); this chooses the same ones from
    the counts, so only those pairs need a score, an interval and a change. With 10,000 stores x 3
    channels a grid of 30 rows scores 90 pairs, not 30,000.
    """
    pairs: list[tuple[str, str, str, int]] = []
    for key, n in responses.items():
        if n < max(min_responses, 1):
            continue
        attrs = domain.parse_segment_key(key)
        if not visible(attrs):
            continue
        pairs.append((key, attrs[heat.rows_by], attrs[heat.columns_by], n))
    cells = [{"row": r, "column": c, "responses": n} for _, r, c, n in pairs]
    row_values = ordered_by_responses(cells, "row")
    column_values = ordered_by_responses(cells, "column")
    rows, columns = set(row_values[:limit_rows]), set(column_values[:limit_columns])
    return Kept(
        keys=frozenset(k for k, r, c, _ in pairs if r in rows and c in columns),
        rows=tuple(row_values[:limit_rows]),
        columns=tuple(column_values[:limit_columns]),
        total_rows=len(row_values),
        total_columns=len(column_values),
    )


def grid(
    rows: Sequence[Mapping[str, Any]],
    heat: HeatmapPlan,
    *,
    limit_rows: int,
    limit_columns: int,
    kept: Kept | None = None,
) -> dict[str, Any]:
    """Breakdown rows of the pairs as cells, keeping the rows and columns with the most answers.
    ``kept``: the rows were already narrowed to the kept pairs (``keep``), whose totals it gives."""
    cells = [
        {
            "row": row["segment"][heat.rows_by],
            "column": row["segment"][heat.columns_by],
            **{k: v for k, v in row.items() if k not in ("value", "rank")},
        }
        for row in rows
    ]
    if kept is None:
        row_values = ordered_by_responses(cells, "row")
        column_values = ordered_by_responses(cells, "column")
    else:  # ordered over every pair, not only the kept ones
        row_values, column_values = list(kept.rows), list(kept.columns)
    kept_rows, kept_columns = set(row_values[:limit_rows]), set(column_values[:limit_columns])
    shown = [c for c in cells if c["row"] in kept_rows and c["column"] in kept_columns]
    row_at = {v: i for i, v in enumerate(row_values)}
    column_at = {v: i for i, v in enumerate(column_values)}
    shown.sort(key=lambda c: (row_at[c["row"]], column_at[c["column"]]))
    return {
        "rows": row_values[:limit_rows],
        "columns": column_values[:limit_columns],
        "total_rows": kept.total_rows if kept is not None else len(row_values),
        "total_columns": kept.total_columns if kept is not None else len(column_values),
        "cells": shown,
    }
