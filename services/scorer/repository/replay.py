"""Rebuild every counter from ``scorer.ratings`` on PostgreSQL, safe while the scorer runs.

1. count every stored rating into shadow tables (unlogged), in batches, remembering which ratings
   were counted; the scorer keeps counting new ratings into the live tables meanwhile;
2. count, in further passes, the ratings stored while the first pass ran;
3. in one short transaction: lock ``scorer.ratings`` against inserts (the scorer waits), count the
   last stragglers, replace the live counters with the shadow ones, mark every segment dirty so the
   score events catch up, forget every drift state so the next round refolds each segment from its
   first day on the new counters (publishing only its last two days' alarms, with the ids a daily
   fold gave them), commit. The scorer then resumes where it was.
The registry of segment values is kept: values keep their counters, new ones register within the
cap, so a replay reproduces the live counts exactly unless the formula changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.scorer.domain import GLOBAL_SEGMENT
from services.scorer.repository.drift import reset_drift
from services.scorer.repository.registry import Registry
from services.scorer.repository.tables import ADVISORY_CLASS, LIVE, LOCK_REPLAY, SHADOW
from services.scorer.repository.writes import StoredRating, apply_stored
from services.scorer.settings import ScorerSettings
from services.scorer.windows import prune_cutoffs

SEEN = "scorer.replay_seen"
_SHADOW_OF = {
    SHADOW.minute: LIVE.minute,
    SHADOW.hour: LIVE.hour,
    SHADOW.day: LIVE.day,
}
_COLUMNS = "metric, segment_key, bucket_start, scale, score, n"
_SELECT = "SELECT rating_id, metric, scale, score, occurred_at, segment FROM scorer.ratings r"


class ReplayBusy(RuntimeError):
    """Another replay holds the lock."""


@dataclass(frozen=True, slots=True)
class Progress:
    phase: str
    done: int
    total: int
    elapsed_s: float

    def line(self) -> str:
        rate = self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 and self.total > self.done else 0.0
        return (
            f"replay [{self.phase}] {self.done:,} / {self.total:,} ratings ({pct:.1f} %), "
            f"{rate:,.0f}/s, eta {eta:.0f} s"
        )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    ratings: int
    passes: int
    buckets: dict[str, int]
    seconds: float
    drift_states_reset: int = 0


async def _fetch(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> list[StoredRating]:
    rows = await conn.execute(text(sql), params)
    return [
        StoredRating(r.rating_id, r.metric, r.scale, int(r.score), r.occurred_at, dict(r.segment))
        for r in rows
    ]


class Replayer:
    """One rebuild; ``run()`` does it all."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        settings: ScorerSettings,
        batch_size: int = 10_000,
        progress: Callable[[Progress], None] = lambda _p: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._s = settings
        self._batch = batch_size
        self._progress = progress
        self._now = now
        self._registry = Registry(
            max_values=settings.max_values_per_dimension,
            max_dimensions=settings.max_dimensions,
            combinations=settings.combos,
        )
        self._done = 0
        self._started = 0.0
        cutoff = prune_cutoffs(settings.tiers, now=now())
        self._minute_since, self._hour_since = cutoff["minute"], cutoff["hour"]

    async def run(self) -> ReplayResult:
        self._started = time.monotonic()
        async with self._engine.connect() as lock_conn:
            got = await lock_conn.execute(
                text("SELECT pg_try_advisory_lock(:c, :k)"),
                {"c": ADVISORY_CLASS, "k": LOCK_REPLAY},
            )
            await lock_conn.commit()
            if not got.scalar_one():
                raise ReplayBusy("another replay is running on this database")
            try:
                return await self._run()
            finally:
                await self._drop_shadow()
                await lock_conn.execute(
                    text("SELECT pg_advisory_unlock(:c, :k)"),
                    {"c": ADVISORY_CLASS, "k": LOCK_REPLAY},
                )
                await lock_conn.commit()

    async def _run(self) -> ReplayResult:
        await self._create_shadow()
        async with self._engine.connect() as conn:
            total = int((await conn.execute(text("SELECT count(*) FROM scorer.ratings"))).scalar_one())
        passes = 1
        after = ""
        while True:
            async with self._engine.begin() as conn:
                rows = await _fetch(
                    conn,
                    f"{_SELECT} WHERE rating_id > :after ORDER BY rating_id LIMIT :n",
                    {"after": after, "n": self._batch},
                )
                if not rows:
                    break
                await self._count(conn, rows)
            after = rows[-1].rating_id
            self._report("scan", total)
        # Ratings stored while the scan ran (their ids may sort anywhere): sweeps until one finds few.
        for _ in range(10):
            passes += 1
            found = await self._sweep(total)
            total = max(total, self._done)
            if found < self._batch:
                break
        for attempt in range(5):
            try:
                buckets, reset = await self._swap()
                break
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) not in ("40P01", "40001") or attempt == 4:
                    raise
        self._report("done", self._done)
        seconds = round(time.monotonic() - self._started, 3)
        return ReplayResult(self._done, passes + 1, buckets, seconds, drift_states_reset=reset)

    async def _sweep(self, total: int) -> int:
        """One pass over the ratings in id order, counting those not counted yet."""
        found = 0
        after = ""
        while True:
            async with self._engine.begin() as conn:
                rows = await _fetch(
                    conn,
                    f"{_SELECT} WHERE r.rating_id > :after AND NOT EXISTS "  # noqa: S608 - constant table names
                    f"(SELECT 1 FROM {SEEN} s WHERE s.rating_id = r.rating_id) ORDER BY r.rating_id LIMIT :n",
                    {"after": after, "n": self._batch},
                )
                if not rows:
                    return found
                await self._count(conn, rows)
            found += len(rows)
            after = rows[-1].rating_id
            self._report("catch-up", max(total, self._done))

    async def _unseen(self, conn: AsyncConnection) -> list[StoredRating]:
        return await _fetch(
            conn,
            f"{_SELECT} WHERE NOT EXISTS (SELECT 1 FROM {SEEN} s WHERE s.rating_id = r.rating_id)",  # noqa: S608 - constant table names
            {},
        )

    async def _count(self, conn: AsyncConnection, rows: Sequence[StoredRating]) -> None:
        if not rows:
            return
        await self._registry.resolve(conn, (r.segment for r in rows if r.segment))
        keys = [self._registry.counted(r.segment).keys if r.segment else GLOBAL_SEGMENT for r in rows]
        await apply_stored(
            conn,
            rows,
            keys,
            tables=SHADOW,
            seen_table=SEEN,
            minute_since=self._minute_since,
            hour_since=self._hour_since,
        )
        self._done += len(rows)

    async def _swap(self) -> tuple[dict[str, int], int]:
        """The only moment the scorer waits: last stragglers, then live := shadow, atomically."""
        done_before = self._done
        try:
            async with self._engine.begin() as conn:
                await conn.execute(text("SET LOCAL lock_timeout = '60s'"))
                await conn.execute(text("LOCK TABLE scorer.ratings IN SHARE MODE"))
                await self._count(conn, await self._unseen(conn))
                buckets: dict[str, int] = {}
                for shadow, live in _SHADOW_OF.items():
                    await conn.execute(text(f"LOCK TABLE {live} IN ACCESS EXCLUSIVE MODE"))
                    await conn.execute(text(f"TRUNCATE {live}"))
                    copied = await conn.execute(
                        text(
                            f"INSERT INTO {live} ({_COLUMNS}) SELECT {_COLUMNS} FROM {shadow} "  # noqa: S608 - table names are module constants
                            "ORDER BY metric, segment_key, bucket_start, scale, score"
                        )
                    )
                    buckets[live] = int(copied.rowcount or 0)
                await conn.execute(
                    text(
                        "INSERT INTO scorer.dirty_segments AS x (metric, segment_key) "
                        "SELECT DISTINCT metric, segment_key FROM scorer.score_counts_day ORDER BY 1, 2 "
                        "ON CONFLICT (metric, segment_key) DO UPDATE SET version = x.version + 1, "
                        "updated_at = now()"
                    )
                )
                reset = await reset_drift(conn)
        except BaseException:
            self._done = done_before
            raise
        return buckets, reset

    async def _create_shadow(self) -> None:
        async with self._engine.begin() as conn:
            await self._drop(conn)
            for shadow, live in _SHADOW_OF.items():
                await conn.execute(text(f"CREATE UNLOGGED TABLE {shadow} (LIKE {live} INCLUDING ALL)"))
            await conn.execute(text(f"CREATE UNLOGGED TABLE {SEEN} (rating_id text PRIMARY KEY)"))

    async def _drop_shadow(self) -> None:
        async with self._engine.begin() as conn:
            await self._drop(conn)

    @staticmethod
    async def _drop(conn: AsyncConnection) -> None:
        for table in (*_SHADOW_OF, SEEN):
            await conn.execute(text(f"DROP TABLE IF EXISTS {table}"))

    def _report(self, phase: str, total: int) -> None:
        self._progress(Progress(phase, self._done, max(total, self._done), time.monotonic() - self._started))
