"""The "response rate dropped" alert: once per closed UTC day, each survey and channel's invitations of
that day (each given 24 hours to be answered) against the 28 days before, by ``measuring.daily_check``
(one-sided Fisher exact test, alpha 0.001, a relative drop of at least 30 %; docs/surveys.md says why).

A drop sets ``csat_survey_response_dropped{survey, channel}`` to 1 until the next day is judged, and
the alert rule ``CsatSurveyResponseDropped`` fires on it (docs/operations.md): a broken template or a
blocked sender shows there first. Stateless: a restart judges the same day again, to the same verdict,
so replicas and restarts agree without storing anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

import structlog
from prometheus_client import Gauge

from services.actions.ports import StoredInvitation, Transactions
from services.actions.surveys.decisions import Delivery
from services.actions.surveys.measuring import DropVerdict, InvitationRecord, daily_check

log = structlog.get_logger("actions.surveys")

RESPONSE_DROPPED = Gauge(
    "csat_survey_response_dropped",
    "1 when the last closed day's survey response rate dropped significantly against the 28 days before",
    ["survey", "channel"],
)
RESPONSE_RATE_DAY = Gauge(
    "csat_survey_response_rate_day",
    "Response rate within 24 h of the invitations sent on the last closed UTC day",
    ["survey", "channel"],
)
RESPONSE_RATE_BASELINE = Gauge(
    "csat_survey_response_rate_baseline",
    "Response rate within 24 h of the invitations sent in the 28 days before it",
    ["survey", "channel"],
)


def last_closed_day(now: datetime, *, horizon: timedelta) -> date:
    """The latest UTC day whose invitations have all had ``horizon`` to be answered."""
    return (now - horizon).astimezone(UTC).date() - timedelta(days=1)


def record_of(row: StoredInvitation) -> InvitationRecord:
    return InvitationRecord(
        survey_id=row.survey_id,
        channel=row.channel,
        segment=row.segment,
        delivery=Delivery(row.delivery),
        sent_at=row.sent_at,
        expires_at=row.expires_at,
        answered_at=row.answered_at,
        commented=row.answered_with_comment,
    )


class SurveyWatch:
    def __init__(
        self,
        *,
        transactions: Transactions,
        clock: Callable[[], datetime],
        baseline_days: int = 28,
        horizon: timedelta = timedelta(hours=24),
        alpha: float = 0.001,
    ) -> None:
        self._transactions = transactions
        self._clock = clock
        self._baseline_days = baseline_days
        self._horizon = horizon
        self._alpha = alpha
        self._judged: date | None = None
        self._shown: set[tuple[str, str]] = set()

    async def check(self) -> dict[tuple[str, str], DropVerdict]:
        """Judge the last closed day once (later calls that day return nothing); the verdicts."""
        now = self._clock()
        day = last_closed_day(now, horizon=self._horizon)
        if day == self._judged:
            return {}
        start = datetime.combine(day, time(0), UTC)
        # Rows due a day before the baseline too: an invitation is sent at or after it is due.
        since = start - timedelta(days=self._baseline_days + 1)
        async with self._transactions.connect() as stores:
            rows = await stores.surveys.list(survey_id=None, since=since)
        groups: dict[tuple[str, str], list[InvitationRecord]] = defaultdict(list)
        for row in rows:
            groups[(row.survey_id, row.channel)].append(record_of(row))
        verdicts = {
            key: daily_check(
                records,
                day=day,
                now=now,
                baseline_days=self._baseline_days,
                horizon=self._horizon,
                alpha=self._alpha,
            )
            for key, records in sorted(groups.items())
        }
        for survey, channel in self._shown - set(verdicts):
            RESPONSE_DROPPED.labels(survey, channel).set(0)
        for (survey, channel), v in verdicts.items():
            RESPONSE_DROPPED.labels(survey, channel).set(1 if v.dropped else 0)
            if v.rate is not None:
                RESPONSE_RATE_DAY.labels(survey, channel).set(v.rate)
            if v.baseline is not None:
                RESPONSE_RATE_BASELINE.labels(survey, channel).set(v.baseline)
            if v.dropped:
                log.warning(
                    "survey_response_dropped",
                    survey=survey,
                    channel=channel,
                    day=day.isoformat(),
                    rate=v.rate,
                    baseline=v.baseline,
                    p_value=v.p_value,
                )
        self._shown |= set(verdicts)
        self._judged = day
        return verdicts

    async def run(self, stop: asyncio.Event, *, interval_s: float) -> None:
        """Look every ``interval_s`` until ``stop``: a day is judged within that of its horizon ending."""
        while not stop.is_set():
            try:
                await self.check()
            except Exception:
                log.exception("survey_watch_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s)
