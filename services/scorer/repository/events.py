"""The score-event evaluator's state on PostgreSQL: dirty segments and what was last published."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer.drift import DriftState
from services.scorer.ports import (
    Counts,
    DirtySegment,
    DriftKey,
    KeyFilter,
    LabelledSpan,
    SegmentFacts,
    StateKey,
)
from services.scorer.repository import drift
from services.scorer.repository.reads import load_counts
from services.scorer.signals import SegmentState

# ``signals.SegmentState``'s fields, as columns of scorer.score_state.
# (The column ``dropping`` of the retired significant-drop alert keeps its default, false.)
STATE_COLUMNS = ("score", "responses", "insufficient", "seq", "below", "alerts", "published")


async def dirty_segments(
    conn: AsyncConnection, *, limit: int, after: DirtySegment | None
) -> list[DirtySegment]:
    rows = await conn.execute(
        text(
            "SELECT metric, segment_key, version FROM scorer.dirty_segments "
            "WHERE (metric, segment_key) > (:am, :ak) ORDER BY metric, segment_key LIMIT :n"
        ),
        {"am": after.metric if after else "", "ak": after.segment_key if after else "", "n": limit},
    )
    return [DirtySegment(r.metric, r.segment_key, int(r.version)) for r in rows]


async def clear_dirty(conn: AsyncConnection, segments: Sequence[DirtySegment]) -> None:
    """Forget segments evaluated, unless a batch touched them again meanwhile (their version moved)."""
    if not segments:
        return
    await conn.execute(
        text(
            "DELETE FROM scorer.dirty_segments d USING unnest(CAST(:m AS text[]), CAST(:k AS text[]), "
            "CAST(:v AS bigint[])) AS u(metric, segment_key, version) "
            "WHERE d.metric = u.metric AND d.segment_key = u.segment_key AND d.version = u.version"
        ),
        {
            "m": [s.metric for s in segments],
            "k": [s.segment_key for s in segments],
            "v": [s.version for s in segments],
        },
    )


async def load_states(
    conn: AsyncConnection, *, metric: str, keys: Sequence[str]
) -> dict[StateKey, SegmentState]:
    rows = await conn.execute(
        text(
            "SELECT segment_key, window_name, " + ", ".join(STATE_COLUMNS) + " FROM scorer.score_state "  # noqa: S608 - column names are module constants; values are bound parameters
            "WHERE metric = :m AND segment_key = ANY(:k)"
        ),
        {"m": metric, "k": list(keys)},
    )
    return {
        StateKey(r.segment_key, r.window_name): SegmentState(**{c: getattr(r, c) for c in STATE_COLUMNS})
        for r in rows
    }


async def save_states(conn: AsyncConnection, *, metric: str, states: Mapping[StateKey, SegmentState]) -> None:
    if not states:
        return
    items = sorted(states.items())
    cols = {c: [getattr(s, c) for _, s in items] for c in STATE_COLUMNS}
    await conn.execute(
        text(
            "INSERT INTO scorer.score_state AS t (metric, segment_key, window_name, score, responses, "
            "insufficient, seq, below, alerts, published, evaluated_at) "
            "SELECT :m, * , now() FROM unnest(CAST(:k AS text[]), CAST(:w AS text[]), "
            "CAST(:score AS float8[]), CAST(:responses AS bigint[]), CAST(:insufficient AS bool[]), "
            "CAST(:seq AS bigint[]), CAST(:below AS bool[]), "
            "CAST(:alerts AS bigint[]), CAST(:published AS bool[])) "
            "ON CONFLICT (metric, segment_key, window_name) DO UPDATE SET score = EXCLUDED.score, "
            "responses = EXCLUDED.responses, insufficient = EXCLUDED.insufficient, seq = EXCLUDED.seq, "
            "below = EXCLUDED.below, alerts = EXCLUDED.alerts, "
            "published = EXCLUDED.published, evaluated_at = now() "
            "WHERE t.seq <= EXCLUDED.seq"
        ),
        {"m": metric, "k": [k.segment_key for k, _ in items], "w": [k.window for k, _ in items], **cols},
    )


class PgScoreEvents:
    """The evaluator's port (``ports.EvaluatorStore``: score events and the drift step): short
    connections of its own, one transaction for what a round saves."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def dirty_segments(self, *, limit: int, after: DirtySegment | None) -> list[DirtySegment]:
        async with self._engine.connect() as conn:
            return await dirty_segments(conn, limit=limit, after=after)

    async def load_segments(
        self, *, metric: str, keys: Sequence[str], spans: Sequence[LabelledSpan]
    ) -> SegmentFacts:
        async with self._engine.connect() as conn:
            counts = await load_counts(conn, metric=metric, where=KeyFilter(keys=keys), spans=spans)
            states = await load_states(conn, metric=metric, keys=keys)
        return SegmentFacts(counts=counts, states=states)

    async def save_evaluation(
        self,
        *,
        states: Mapping[str, Mapping[StateKey, SegmentState]],
        evaluated: Sequence[DirtySegment],
    ) -> None:
        async with self._engine.begin() as conn:
            for metric, states_for_metric in states.items():
                await save_states(conn, metric=metric, states=states_for_metric)
            await clear_dirty(conn, evaluated)

    # ---- ports.DriftStore -------------------------------------------------------------------------
    async def drift_pending(self, *, through: date, limit: int, after: DriftKey | None) -> list[DriftKey]:
        async with self._engine.connect() as conn:
            return await drift.drift_pending(conn, through=through, limit=limit, after=after)

    async def drift_states(self, *, metric: str, keys: Sequence[str]) -> dict[str, DriftState]:
        async with self._engine.connect() as conn:
            return await drift.drift_states(conn, metric=metric, keys=keys)

    async def first_days(self, *, metric: str, keys: Sequence[str]) -> dict[str, date]:
        async with self._engine.connect() as conn:
            return await drift.first_days(conn, metric=metric, keys=keys)

    async def day_counts(
        self, *, metric: str, since: Mapping[str, date], through: date
    ) -> dict[str, dict[date, Counts]]:
        async with self._engine.connect() as conn:
            return await drift.day_counts(conn, metric=metric, since=since, through=through)

    async def save_drift(self, *, states: Mapping[DriftKey, DriftState], evaluated_at: datetime) -> None:
        async with self._engine.begin() as conn:
            await drift.save_drift(conn, states=states, evaluated_at=evaluated_at)
