"""The survey response-drop watch on the in-memory store: a survey and channel whose last closed day was
answered far less than its 28 days before sets its gauge (what CsatSurveyResponseDropped fires on), an
ordinary day does not, and a day is judged once. The test itself: tests/unit/test_survey_measuring.py;
the alert rule: tests/ops/alerts.test.yaml."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from services.actions.ports import StoredInvitation
from services.actions.survey_watch import SurveyWatch, last_closed_day
from tests.fakes.actions_store import MemoryActions

# 2026-11-23 is the last closed day at 2026-11-25 01:00 UTC (each invitation of it had 24 h to answer).
NOW = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
DAY = datetime(2026, 11, 23, tzinfo=UTC)


def row(
    n: int, survey: str, channel: str, sent: datetime, answered_after: timedelta | None
) -> StoredInvitation:
    return StoredInvitation(
        invitation_id=f"{survey}-{channel}-{n}",
        survey_id=survey,
        interaction_id=f"i-{n}",
        customer_id=f"c-{n}",
        channel=channel,
        locale="en",
        segment={},
        recipient={},
        source=None,
        due_at=sent,
        expires_at=sent + timedelta(days=7),
        reminder_at=None,
        status="requested",
        delivery="sent",
        requested_at=sent,
        sent_at=sent,
        answered_at=sent + answered_after if answered_after is not None else None,
    )


def fill(db: MemoryActions, survey: str, channel: str, *, day_answered: int) -> None:
    """40 a day answered at 30 % within 3 hours for 28 days, then 40 on DAY with ``day_answered`` answers."""
    n = 0
    for d in range(1, 29):
        for i in range(40):
            sent = DAY - timedelta(days=d) + timedelta(hours=9, minutes=i)
            r = row(n, survey, channel, sent, timedelta(hours=3) if i % 10 < 3 else None)
            db.tables.invitations[r.invitation_id] = r
            n += 1
    for i in range(40):
        sent = DAY + timedelta(hours=9, minutes=i)
        r = row(n, survey, channel, sent, timedelta(hours=3) if i < day_answered else None)
        db.tables.invitations[r.invitation_id] = r
        n += 1


def gauge(name: str, survey: str, channel: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"survey": survey, "channel": channel})


def test_the_last_closed_day_is_the_one_whose_invitations_all_had_24_hours() -> None:
    assert last_closed_day(NOW, horizon=timedelta(hours=24)) == DAY.date()
    assert (
        last_closed_day(DAY + timedelta(days=1, hours=23, minutes=59), horizon=timedelta(hours=24))
        == (DAY - timedelta(days=1)).date()
    )


async def test_a_day_answered_far_less_than_usual_sets_the_gauge_the_alert_fires_on() -> None:
    db = MemoryActions()
    fill(db, "watch-broken", "email", day_answered=1)  # 1 of 40 against 30 %: a broken template
    fill(db, "watch-fine", "email", day_answered=11)  # 11 of 40: an ordinary day
    fill(db, "watch-fine", "sms", day_answered=0)  # the same survey's other channel is judged apart
    watch = SurveyWatch(transactions=db, clock=lambda: NOW)
    verdicts = await watch.check()
    broken = verdicts[("watch-broken", "email")]
    assert broken.dropped and broken.rate == 1 / 40 and broken.baseline == 0.3
    assert broken.p_value is not None and broken.p_value < 0.001
    assert not verdicts[("watch-fine", "email")].dropped
    assert verdicts[("watch-fine", "sms")].dropped
    assert gauge("csat_survey_response_dropped", "watch-broken", "email") == 1
    assert gauge("csat_survey_response_dropped", "watch-fine", "email") == 0
    assert gauge("csat_survey_response_rate_day", "watch-broken", "email") == 1 / 40
    assert gauge("csat_survey_response_rate_baseline", "watch-broken", "email") == 0.3
    assert await watch.check() == {}  # the same day is judged once


async def test_the_next_day_clears_a_drop_that_is_over() -> None:
    db = MemoryActions()
    fill(db, "watch-recovered", "email", day_answered=0)
    clock = [NOW]
    watch = SurveyWatch(transactions=db, clock=lambda: clock[0])
    assert (await watch.check())[("watch-recovered", "email")].dropped
    assert gauge("csat_survey_response_dropped", "watch-recovered", "email") == 1
    for i in range(40):  # the next day: back to 30 %
        sent = DAY + timedelta(days=1, hours=9, minutes=i)
        r = row(10_000 + i, "watch-recovered", "email", sent, timedelta(hours=2) if i % 10 < 3 else None)
        db.tables.invitations[r.invitation_id] = r
    clock[0] = NOW + timedelta(days=1)
    assert not (await watch.check())[("watch-recovered", "email")].dropped
    assert gauge("csat_survey_response_dropped", "watch-recovered", "email") == 0
