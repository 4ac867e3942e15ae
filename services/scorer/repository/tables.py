"""Names shared by the scorer's SQL: the counter tables of each tier and the advisory locks."""

from __future__ import annotations

from dataclasses import dataclass

# pg_advisory_xact_lock(ADVISORY_CLASS, n): one namespace for the scorer's advisory locks.
ADVISORY_CLASS = 7341
LOCK_DIMENSIONS = 1
LOCK_PRUNE = 2
LOCK_REPLAY = 3


@dataclass(frozen=True, slots=True)
class CounterTables:
    """Where increments go: the live tiers, or a replay's shadow copies."""

    minute: str
    hour: str
    day: str
    dirty: str | None

    def by_tier(self) -> dict[str, str]:
        return {"minute": self.minute, "hour": self.hour, "day": self.day}


LIVE = CounterTables(
    minute="scorer.score_counts_minute",
    hour="scorer.score_counts",
    day="scorer.score_counts_day",
    dirty="scorer.dirty_segments",
)
SHADOW = CounterTables(
    minute="scorer.replay_counts_minute",
    hour="scorer.replay_counts_hour",
    day="scorer.replay_counts_day",
    dirty=None,
)
TIER_TABLES = LIVE.by_tier()
