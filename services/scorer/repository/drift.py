"""The drift step's state on PostgreSQL (``scorer.drift_state``) and the day counters it folds.

One row per (metric, segment): ``drift.DriftState`` in columns (migration 0010 lists them). Counts are
stored as arrays over the metric's value grid (``drift.VALUES``), the last alarm's estimate as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.scorer.drift import Calibration, DriftState, DropEstimate, Status, Tally, status_of
from services.scorer.ports import Counts, DriftKey, DriftRecord
from shared.scales import Metric

_STATE_COLUMNS = (
    "day, log_sr, cusum, since, before_counts, after_counts, floor, episode_since, alarms, last_drop, "
    "cal_day, cal_status, cal_baseline, cal_baseline_days, cal_rate, cal_mean, cal_watched_drop, "
    "cal_delay_min_drop, cal_delay_watched, cal_theta, cal_offset, status"
)
_NAMES = [c.strip() for c in _STATE_COLUMNS.split(",")]


def midnight(day: date) -> datetime:
    """The day bucket's start (UTC)."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def _counts(t: Tally | None) -> list[int] | None:
    return None if t is None else list(t.counts)


def _tally(metric: Metric, counts: Sequence[int] | None) -> Tally | None:
    return None if counts is None else Tally(metric, tuple(int(c) for c in counts))


def _drop_json(d: DropEstimate | None) -> str | None:
    if d is None:
        return None
    return json.dumps(
        {
            "since": d.since.isoformat(),
            "before": d.before,
            "after": d.after,
            "size": d.size,
            "ci_low": d.ci_low,
            "ci_high": d.ci_high,
            "answers_before": d.answers_before,
            "answers_after": d.answers_after,
        }
    )


def _drop(value: Any) -> DropEstimate | None:
    if value is None:
        return None
    raw = json.loads(value) if isinstance(value, str) else value
    return DropEstimate(
        since=date.fromisoformat(raw["since"]),
        before=raw["before"],
        after=raw["after"],
        size=raw["size"],
        ci_low=raw["ci_low"],
        ci_high=raw["ci_high"],
        answers_before=raw["answers_before"],
        answers_after=raw["answers_after"],
    )


def state_row(metric: str, segment_key: str, state: DriftState) -> dict[str, Any]:
    """The row of a state (every column, for an upsert)."""
    cal = state.calibration
    return {
        "metric": metric,
        "segment_key": segment_key,
        "day": state.day,
        "log_sr": state.log_sr,
        "cusum": state.cusum,
        "since": state.since,
        "before_counts": _counts(state.before),
        "after_counts": _counts(state.after),
        "floor": state.floor,
        "episode_since": state.episode_since,
        "alarms": state.alarms,
        "last_drop": _drop_json(state.last_drop),
        "cal_day": None if cal is None else cal.day,
        "cal_status": None if cal is None else cal.status.value,
        "cal_baseline": None if cal is None else _counts(cal.baseline),
        "cal_baseline_days": None if cal is None else cal.baseline_days,
        "cal_rate": None if cal is None else cal.rate,
        "cal_mean": None if cal is None else cal.mean,
        "cal_watched_drop": None if cal is None else cal.watched_drop,
        "cal_delay_min_drop": None if cal is None else cal.delay_min_drop,
        "cal_delay_watched": None if cal is None else cal.delay_watched,
        "cal_theta": None if cal is None else cal.theta,
        "cal_offset": None if cal is None else cal.offset,
        "status": status_of(state).value,
    }


def state_of(metric: Metric, r: Any) -> DriftState:
    """A state from its row (the inverse of :func:`state_row`)."""
    cal = None
    if r.cal_day is not None:
        baseline = _tally(metric, r.cal_baseline)
        assert baseline is not None  # written together with cal_day
        cal = Calibration(
            day=r.cal_day,
            status=Status(r.cal_status),
            baseline=baseline,
            baseline_days=r.cal_baseline_days,
            rate=r.cal_rate,
            mean=r.cal_mean,
            watched_drop=r.cal_watched_drop,
            delay_min_drop=r.cal_delay_min_drop,
            delay_watched=r.cal_delay_watched,
            theta=r.cal_theta,
            offset=r.cal_offset,
        )
    return DriftState(
        day=r.day,
        log_sr=r.log_sr,
        cusum=r.cusum,
        since=r.since,
        before=_tally(metric, r.before_counts),
        after=_tally(metric, r.after_counts),
        floor=r.floor,
        episode_since=r.episode_since,
        alarms=r.alarms,
        calibration=cal,
        last_drop=_drop(r.last_drop),
    )


async def drift_pending(
    conn: AsyncConnection, *, through: date, limit: int, after: DriftKey | None
) -> list[DriftKey]:
    # Day buckets are never pruned, so every segment with a state has counters: they list them all.
    rows = await conn.execute(
        text(
            "SELECT k.metric, k.segment_key FROM (SELECT DISTINCT metric, segment_key "
            "FROM scorer.score_counts_day "
            "WHERE (metric, segment_key) > (:am, :ak) AND bucket_start < :end) k "
            "WHERE NOT EXISTS (SELECT 1 FROM scorer.drift_state s WHERE s.metric = k.metric "
            "AND s.segment_key = k.segment_key AND s.day >= :through) "
            "ORDER BY k.metric, k.segment_key LIMIT :n"
        ),
        {
            "am": after.metric if after else "",
            "ak": after.segment_key if after else "",
            "end": midnight(through + timedelta(days=1)),
            "through": through,
            "n": limit,
        },
    )
    return [DriftKey(r.metric, r.segment_key) for r in rows]


async def drift_states(conn: AsyncConnection, *, metric: str, keys: Sequence[str]) -> dict[str, DriftState]:
    return {r.segment_key: r.state for r in await drift_records(conn, metric=metric, keys=keys)}


async def drift_records(conn: AsyncConnection, *, metric: str, keys: Sequence[str]) -> list[DriftRecord]:
    rows = await conn.execute(
        text(
            f"SELECT metric, segment_key, evaluated_at, {_STATE_COLUMNS} FROM scorer.drift_state "  # noqa: S608 - column names are module constants; values are bound parameters
            "WHERE metric = :m AND segment_key = ANY(:k)"
        ),
        {"m": metric, "k": list(keys)},
    )
    return [_record(r) for r in rows]


def _record(r: Any) -> DriftRecord:
    return DriftRecord(r.metric, r.segment_key, state_of(Metric(r.metric), r), r.evaluated_at)


async def drift_list(
    conn: AsyncConnection, *, metric: str | None, status: str | None, after: DriftKey | None, limit: int
) -> list[DriftRecord]:
    rows = await conn.execute(
        text(
            f"SELECT metric, segment_key, evaluated_at, {_STATE_COLUMNS} FROM scorer.drift_state "  # noqa: S608 - column names are module constants; values are bound parameters
            "WHERE (CAST(:m AS text) IS NULL OR metric = :m) AND (CAST(:s AS text) IS NULL OR status = :s) "
            "AND (metric, segment_key) > (:am, :ak) ORDER BY metric, segment_key LIMIT :n"
        ),
        {
            "m": metric,
            "s": status,
            "am": after.metric if after else "",
            "ak": after.segment_key if after else "",
            "n": limit,
        },
    )
    return [_record(r) for r in rows]


async def first_days(conn: AsyncConnection, *, metric: str, keys: Sequence[str]) -> dict[str, date]:
    rows = await conn.execute(
        text(
            "SELECT segment_key, min(bucket_start) AS first FROM scorer.score_counts_day "
            "WHERE metric = :m AND segment_key = ANY(:k) GROUP BY segment_key"
        ),
        {"m": metric, "k": list(keys)},
    )
    return {r.segment_key: r.first.astimezone(UTC).date() for r in rows}


async def day_counts(
    conn: AsyncConnection, *, metric: str, since: Mapping[str, date], through: date
) -> dict[str, dict[date, Counts]]:
    if not since:
        return {}
    keys = sorted(since)
    rows = await conn.execute(
        text(
            "SELECT c.segment_key, c.bucket_start, c.scale, c.score, c.n FROM scorer.score_counts_day c "
            "JOIN unnest(CAST(:k AS text[]), CAST(:s AS timestamptz[])) AS u(segment_key, since) "
            "ON c.segment_key = u.segment_key "
            "WHERE c.metric = :m AND c.bucket_start >= u.since AND c.bucket_start < :end"
        ),
        {
            "m": metric,
            "k": keys,
            "s": [midnight(since[k]) for k in keys],
            "end": midnight(through + timedelta(days=1)),
        },
    )
    out: dict[str, dict[date, Counts]] = {}
    for r in rows:
        day = r.bucket_start.astimezone(UTC).date()
        counts = out.setdefault(r.segment_key, {}).setdefault(day, {})
        counts[(r.scale, int(r.score))] = counts.get((r.scale, int(r.score)), 0) + int(r.n)
    return out


async def save_drift(
    conn: AsyncConnection, *, states: Mapping[DriftKey, DriftState], evaluated_at: datetime
) -> None:
    """Upsert in key order (concurrent replicas lock rows in one order); never back to an earlier day."""
    if not states:
        return
    rows = [
        {**state_row(k.metric, k.segment_key, s), "evaluated_at": evaluated_at}
        for k, s in sorted(states.items())
    ]
    values = ", ".join(f":{c}" if c != "last_drop" else "CAST(:last_drop AS jsonb)" for c in _NAMES)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in _NAMES)
    await conn.execute(
        text(
            f"INSERT INTO scorer.drift_state AS t (metric, segment_key, {_STATE_COLUMNS}, evaluated_at) "  # noqa: S608 - column names are module constants; values are bound parameters
            f"VALUES (:metric, :segment_key, {values}, :evaluated_at) "
            f"ON CONFLICT (metric, segment_key) DO UPDATE SET {updates}, "
            "evaluated_at = EXCLUDED.evaluated_at WHERE t.day <= EXCLUDED.day"
        ),
        rows,
    )


async def reset_drift(conn: AsyncConnection) -> int:
    """Forget every drift state (a replay): the next round refolds each segment from its first day."""
    result = await conn.execute(text("DELETE FROM scorer.drift_state"))
    return int(result.rowcount or 0)
