"""Survey measures: funnels by survey/channel/segment, rates with intervals, time to answer, drops, flags."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from services.actions.surveys.decisions import Delivery
from services.actions.surveys.measuring import (
    Cohort,
    Funnel,
    Group,
    InvitationRecord,
    Label,
    daily_check,
    rates,
    response_drop,
    tally,
)

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def record(**kw: Any) -> InvitationRecord:
    base: dict[str, Any] = {
        "survey_id": "delivery",
        "channel": "email",
        "segment": {"store": "paris-1"},
        "delivery": Delivery.SENT,
        "sent_at": T0,
        "expires_at": T0 + timedelta(days=7),
    }
    return InvitationRecord(**{**base, **kw})


RECORDS = [
    record(answered_at=T0 + timedelta(minutes=10), commented=True),
    record(answered_at=T0 + timedelta(hours=2)),
    record(),  # sent, never answered, past its window: expired
    record(delivery=Delivery.BOUNCED),  # bounced: sent, not delivered, expires unanswered too
    record(delivery=Delivery.PENDING, sent_at=None),  # not sent yet: invited only
    record(delivery=Delivery.UNKNOWN, answered_at=T0 + timedelta(hours=1)),  # the answer proves it went out
    record(channel="sms", segment={"store": "lyon-2"}, answered_at=T0 + timedelta(minutes=3)),
    record(survey_id="chat", channel="in_app", segment={}, expires_at=NOW + timedelta(days=1)),  # still open
]


@pytest.mark.parametrize(
    ("by", "expected"),
    [
        ((), {"all": (8, 7, 1, 4, 1, 2)}),
        (("survey",), {"survey=delivery": (7, 6, 1, 4, 1, 2), "survey=chat": (1, 1, 0, 0, 0, 0)}),
        (
            ("survey", "channel"),
            {
                "survey=delivery, channel=email": (6, 5, 1, 3, 1, 2),
                "survey=delivery, channel=sms": (1, 1, 0, 1, 0, 0),
                "survey=chat, channel=in_app": (1, 1, 0, 0, 0, 0),
            },
        ),
        (
            ("segment.store",),
            {
                "segment.store=paris-1": (6, 5, 1, 3, 1, 2),
                "segment.store=lyon-2": (1, 1, 0, 1, 0, 0),
                "segment.store=(none)": (1, 1, 0, 0, 0, 0),
            },
        ),
    ],
)
def test_funnels_by_survey_channel_and_segment(
    by: tuple[str, ...], expected: dict[str, tuple[int, int, int, int, int, int]]
) -> None:
    funnels = tally(RECORDS, by=by, now=NOW)
    got = {
        str(g): (f.invited, f.sent, f.bounced, f.answered, f.commented, f.expired) for g, f in funnels.items()
    }
    assert got == expected
    assert sum(f.delivered for f in funnels.values()) == 6


def test_grouping_by_something_unknown_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot group by 'agent'"):
        tally(RECORDS, by=("agent",), now=NOW)


def test_rates_of_a_worked_funnel() -> None:
    """1,000 sent, 20 bounced, 300 answered (120 with a comment): 30 % response, 40 % completion."""
    funnel = Funnel(invited=1010, sent=1000, bounced=20, answered=300, commented=120)
    funnel.answer_seconds = [float(s) for s in range(1, 301)]  # 1 s .. 300 s
    r = rates(funnel)
    assert r.response.value == 0.3 and (
        round(r.response.ci_low or 0, 4),
        round(r.response.ci_high or 0, 4),
    ) == (
        0.2724,
        0.3291,
    )
    assert r.completion.value == 0.4 and r.bounce.value == 0.02
    assert (r.answer_p50_s, r.answer_p90_s) == (150.0, 270.0)
    assert not r.low_response


@pytest.mark.parametrize(
    ("sent", "answered", "threshold", "low"),
    [
        (1000, 50, 0.10, True),
        (1000, 100, 0.10, False),
        (20, 0, 0.10, False),
        (200, 30, 0.20, True),
        (0, 0, 0.1, False),
    ],
)
def test_low_response_flags_less_representative_scores(
    sent: int, answered: int, threshold: float, low: bool
) -> None:
    r = rates(Funnel(sent=sent, answered=answered), threshold=threshold)
    assert r.low_response is low
    assert r.answer_p50_s is None and (r.completion.value is None) is (answered == 0)


@pytest.mark.parametrize(
    ("day", "baseline", "reason"),
    [
        (Cohort(0, 0), Cohort(5000, 1500), "no_data"),
        (Cohort(10, 0), Cohort(5000, 1500), "too_few"),  # 3 answers expected: a day of 10 cannot show a drop
        (Cohort(200, 0), Cohort(5000, 1500), "dropped"),  # a broken template: nobody answers
        (Cohort(200, 20), Cohort(5000, 1500), "dropped"),  # 10 % against 30 %
        (Cohort(200, 52), Cohort(5000, 1500), "not_significant"),  # 26 % against 30 %: noise
        (Cohort(20000, 5700), Cohort(140000, 42000), "too_small"),  # 28.5 % vs 30 %: significant, irrelevant
        (Cohort(200, 80), Cohort(5000, 1500), "not_significant"),  # better than usual
    ],
)
def test_the_daily_drop_test(day: Cohort, baseline: Cohort, reason: str) -> None:
    verdict = response_drop(day, baseline)
    assert verdict.reason == reason and verdict.dropped is (reason == "dropped")
    if reason in ("dropped", "not_significant", "too_small"):
        assert verdict.p_value is not None and (verdict.p_value < 0.001) is (reason != "not_significant")


def test_daily_check_on_records_finds_the_broken_day() -> None:
    """28 days at 30 % (answers within the hour), then a day where nobody answers."""
    day = date(2026, 11, 29)
    records = []
    for d in range(1, 29):
        sent = datetime.combine(day - timedelta(days=d), time(10), UTC)
        for n in range(50):
            answered = sent + timedelta(minutes=30) if n < 15 else None
            records.append(record(sent_at=sent, answered_at=answered, expires_at=sent + timedelta(days=7)))
    broken = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    records += [record(sent_at=broken, expires_at=broken + timedelta(days=7)) for _ in range(50)]
    verdict = daily_check(records, day=day, now=datetime(2026, 12, 1, 0, 0, tzinfo=UTC))
    assert verdict.dropped and verdict.rate == 0.0 and verdict.baseline == 0.3
    early = daily_check(records, day=day, now=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    assert early.reason == "not_closed"  # the day's invitations have not had their 24 h yet


def test_a_group_prints_its_labels() -> None:
    assert (
        str(Group((Label("survey", "delivery"), Label("channel", "sms")))) == "survey=delivery, channel=sms"
    )
    assert str(Group()) == "all"
