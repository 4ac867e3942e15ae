"""The scorer's survey response rate on the real broker and PostgreSQL: invitations from
csat.surveys.invited.v1 and answers (ratings naming the invitation) counted once per segment, whichever
topic delivers first, replays and a restart included; GET /v1/scores says answered / invited exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from services.scorer.bootstrap import create_app
from services.scorer.repository import maintenance
from services.scorer.settings import ScorerSettings
from shared import events as ev
from shared.db import make_engine
from shared.envelope import OutgoingRecord, encode
from shared.scales import SCALES, Metric, Sentiment
from shared.stats import wilson_interval
from shared.topics import Topics
from tests.credentials import ADMIN
from tests.helpers import make_settings, produce, running, wait_for
from tests.infra import Infra

pytestmark = pytest.mark.integration

PARIS = {"store": "paris-1", "channel": "email"}
LYON = {"store": "lyon-2", "channel": "email"}


def settings(infra: Infra, database_url: str, topics: Topics) -> ScorerSettings:
    return make_settings(
        ScorerSettings,
        kafka_bootstrap=infra.bootstrap,
        database_url=database_url,
        topic_prefix=topics.prefix,
        log_format="console",
    )


def invitation(topics: Topics, n: int, segment: dict[str, str], at: datetime) -> OutgoingRecord:
    return encode(
        topic=topics.surveys_invited,
        event_type=ev.SURVEY_INVITED,
        source="/actions",
        event_id=f"survey-invited-inv-{n}",
        key=f"cus-{n}",
        data=ev.SurveyInvited(
            invitation_id=f"inv-{n}",
            survey_id="post-delivery",
            metric=Metric.CSAT,
            scale="1-5",
            channel="email",
            segment=segment,
            invited_at=at,
            expires_at=at + timedelta(days=7),
        ),
    )


def answer(
    topics: Topics,
    n: int,
    score: int,
    segment: dict[str, str],
    at: datetime,
    comment: str | None = None,
    *,
    invited: bool = True,
) -> OutgoingRecord:
    scale = SCALES[(Metric.CSAT, "1-5")]
    rating = ev.RatingSubmitted(
        rating_id=f"email-inv-{n}",
        metric=Metric.CSAT,
        scale="1-5",
        score=score,
        normalized=scale.normalized(score),
        sentiment=scale.sentiment(score),
        positive=scale.sentiment(score) is Sentiment.POSITIVE,
        customer=ev.CustomerRef(id=f"cus-{n}"),
        segment=segment,
        survey_id=f"inv-{n}" if invited else None,
        comment=comment,
        occurred_at=at,
        received_at=at,
    )
    return encode(
        topic=topics.ratings,
        event_type=ev.RATING_SUBMITTED,
        source="/collector",
        event_id=rating.rating_id,
        key=f"cus-{n}",
        data=rating,
    )


async def table_counts(url: str) -> tuple[int, int]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT coalesce(sum(invited), 0), coalesce(sum(answered), 0) "
                        "FROM scorer.response_counts"
                    )
                )
            ).one()
            return int(row[0]), int(row[1])
    finally:
        await engine.dispose()


async def test_response_rate_counted_once_across_topics_replays_and_a_restart(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    now = datetime.now(UTC)
    sent = now - timedelta(hours=3)
    # Paris: 120 invited, 10 answered (8.3 %: low); Lyon: 50 invited, 20 answered.
    paris = [invitation(topics, n, PARIS, sent) for n in range(120)]
    lyon = [invitation(topics, 1000 + n, LYON, sent) for n in range(50)]
    # Five of Paris's answers came with a comment (the follow-up question): completion 5 / 30 overall.
    paris_answers = [
        answer(topics, n, 5, PARIS, now - timedelta(hours=1), "Quick" if n % 26 == 0 else None)
        for n in range(0, 120, 13)
    ]
    lyon_answers = [answer(topics, 1000 + n, 4, LYON, now - timedelta(hours=1)) for n in range(20)]
    assert len(paris_answers) == 10
    # Answers of ten invitations arrive before their invitations; Lyon's second half comes later.
    await produce(infra.bootstrap, paris_answers + lyon_answers[:10])
    await produce(infra.bootstrap, paris + lyon[:25])
    app = create_app(settings(infra, database_url, topics))
    async with running(app, headers=ADMIN) as client:

        async def rate(segment: str | None = None) -> Any:
            params = {"window": "7d", **({"segment": segment} if segment else {})}
            return (await client.get("/v1/scores", params=params)).json()

        body = await wait_for(
            rate,
            until=lambda b: (b["response_rate"] or {}).get("invited") == 145 and b["responses"] == 20,
            timeout_s=60,
        )
        assert body["response_rate"]["answered"] == 20
    # Restart: the rest, and every record again (a producer retry, a replay): counted once.
    await produce(
        infra.bootstrap, lyon[25:] + lyon_answers[10:] + paris[:40] + paris_answers + lyon_answers[:5]
    )
    async with running(create_app(settings(infra, database_url, topics)), headers=ADMIN) as client:
        # Both topics caught up: the answers alone can reach 30 before Lyon's last invitations count.
        body = await wait_for(
            rate,
            until=lambda b: (
                ((b["response_rate"] or {}).get("invited"), (b["response_rate"] or {}).get("answered"))
                == (170, 30)
            ),
            timeout_s=60,
        )
        rr = body["response_rate"]
        assert (rr["invited"], rr["answered"], rr["rate"]) == (170, 30, 30 / 170)
        assert body["responses"] == 30 and body["low_response"] is False
        done = body["completion_rate"]
        assert (done["answered"], done["commented"], done["rate"]) == (30, 5, 5 / 30)
        p = await rate("store:paris-1")
        assert (p["response_rate"]["invited"], p["response_rate"]["answered"]) == (120, 10)
        assert p["response_rate"]["rate"] == 10 / 120
        assert (p["response_rate"]["ci_low"], p["response_rate"]["ci_high"]) == wilson_interval(10, 120)
        assert p["response_rate"]["low"] is p["low_response"] is True
        lyon_body = await rate("store:lyon-2")
        assert lyon_body["response_rate"]["rate"] == 20 / 50 and lyon_body["low_response"] is False
        # Another dimension of the same invitations.
        rows = await rate("channel:email")
        assert (rows["response_rate"]["invited"], rows["response_rate"]["answered"]) == (170, 30)
    # Every counter row: the global key, store, channel and store x channel, each 170 / 30.
    assert await table_counts(database_url) == (4 * 170, 4 * 30)


async def test_retention_drops_invitation_rows_the_counters_no_longer_need(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=801)  # past CSAT_HOUR_RETENTION_DAYS (800)
    await produce(
        infra.bootstrap,
        [
            invitation(topics, 1, PARIS, old),
            invitation(topics, 2, PARIS, now - timedelta(hours=2)),
            answer(topics, 2, 5, PARIS, now - timedelta(hours=1)),
            # an answer naming no invitation, long ago (a hand-sent email link), and a recent one
            answer(topics, 3, 4, PARIS, now - timedelta(days=121)),
            answer(topics, 4, 4, PARIS, now - timedelta(days=1)),
        ],
    )
    cfg = settings(infra, database_url, topics)
    engine = make_engine(database_url)

    async def rows() -> list[str]:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT invitation_id FROM scorer.survey_responses ORDER BY 1"))
            return [r[0] for r in found]

    try:
        async with running(create_app(cfg), headers=ADMIN):
            await wait_for(rows, until=lambda ids: len(ids) == 4, timeout_s=60)
            await wait_for(lambda: table_counts(database_url), until=lambda c: c == (4 * 2, 4 * 1))
        # (the scorer's own prune job may have run already: what is left is checked, not who deleted it)
        await maintenance.prune(engine, settings=cfg, now=now)
        assert await rows() == ["inv-2", "inv-4"]
    finally:
        await engine.dispose()
    assert await table_counts(database_url) == (4 * 2, 4 * 1)  # the counts stay


async def test_breakdown_rows_carry_each_segments_response_rate(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    """GET /v1/scores/breakdown gives each row the response rate GET /v1/scores gives its segment:
    answered / invited with its Wilson interval, the completion rate and the low-response flag (under
    10 % on at least 30 invitations), and none for a segment no survey invited."""
    now = datetime.now(UTC)
    sent = now - timedelta(hours=3)
    marseille = {"store": "marseille-3", "channel": "email"}
    nice = {"store": "nice-4", "channel": "web"}
    records = [invitation(topics, n, PARIS, sent) for n in range(120)]
    records += [invitation(topics, 1000 + n, LYON, sent) for n in range(50)]
    records += [invitation(topics, 2000 + n, marseille, sent) for n in range(20)]
    records += [
        answer(topics, n, 5, PARIS, now - timedelta(hours=1), "Quick" if n % 26 == 0 else None)
        for n in range(0, 120, 13)
    ]
    records += [answer(topics, 1000 + n, 4, LYON, now - timedelta(hours=1)) for n in range(20)]
    records += [answer(topics, 2000, 2, marseille, now - timedelta(hours=1), "Slow")]
    # Nice: a rating that answers no invitation (the widget): a row without a response rate.
    records.append(answer(topics, 3000, 4, nice, now - timedelta(hours=1), invited=False))
    await produce(infra.bootstrap, records)
    async with running(create_app(settings(infra, database_url, topics)), headers=ADMIN) as client:

        async def breakdown(by: str) -> Any:
            r = await client.get("/v1/scores/breakdown", params={"by": by, "window": "7d"})
            assert r.status_code == 200, r.text
            return r.json()

        # Wait on GET /v1/scores, which computes every time: a breakdown polled before the scorer has
        # caught up would keep serving its cached ranking for CSAT_BREAKDOWN_CACHE_S (30 s).
        async def counted() -> dict[str, tuple[int, int | None, int | None]]:
            out = {}
            for store in ("paris-1", "lyon-2", "marseille-3", "nice-4"):
                r = await client.get("/v1/scores", params={"window": "7d", "segment": f"store:{store}"})
                assert r.status_code == 200, r.text
                body, rr = r.json(), r.json()["response_rate"] or {}
                out[store] = (body["responses"], rr.get("invited"), rr.get("answered"))
            return out

        caught_up = {
            "paris-1": (10, 120, 10),
            "lyon-2": (20, 50, 20),
            "marseille-3": (1, 20, 1),
            "nice-4": (1, None, None),
        }
        await wait_for(counted, until=lambda c: c == caught_up, timeout_s=60)
        body = await breakdown("store")
        rows = {row["value"]: row for row in body["segments"]}
        expected = {"paris-1": (120, 10, True), "lyon-2": (50, 20, False), "marseille-3": (20, 1, False)}
        for value, (invited, answered, low) in expected.items():
            rr = rows[value]["response_rate"]
            assert (rr["invited"], rr["answered"], rr["rate"]) == (invited, answered, answered / invited)
            assert (rr["ci_low"], rr["ci_high"]) == wilson_interval(answered, invited)
            assert rr["low"] is rows[value]["low_response"] is low, value
            assert (rr["threshold"], rr["min_invited"]) == (0.10, 30)
        # Marseille: 5 % but on 20 invitations, too few to call it low.
        assert rows["marseille-3"]["response_rate"]["rate"] == 0.05
        done = rows["paris-1"]["completion_rate"]
        assert (done["answered"], done["commented"], done["rate"]) == (10, 5, 0.5)
        assert (done["ci_low"], done["ci_high"]) == wilson_interval(5, 10)
        assert rows["lyon-2"]["completion_rate"]["commented"] == 0
        assert rows["marseille-3"]["completion_rate"]["rate"] == 1.0
        nice_row = rows["nice-4"]
        assert (nice_row["response_rate"], nice_row["completion_rate"], nice_row["low_response"]) == (
            None,
            None,
            False,
        )
        # Each row says what GET /v1/scores says of its segment.
        single = (await client.get("/v1/scores", params={"window": "7d", "segment": "store:paris-1"})).json()
        paris_row = rows["paris-1"]
        for field in ("response_rate", "completion_rate", "low_response"):
            assert paris_row[field] == single[field], field
        # Another dimension of the same invitations.
        channels = {row["value"]: row for row in (await breakdown("channel"))["segments"]}
        email = channels["email"]["response_rate"]
        assert (email["invited"], email["answered"], email["rate"]) == (190, 31, 31 / 190)
        assert channels["web"]["response_rate"] is None
        # The schema documents the new fields.
        doc = (await client.get("/openapi.json")).json()
        row_schema = doc["components"]["schemas"]["BreakdownRowOut"]["properties"]
        assert {"response_rate", "completion_rate", "low_response"} <= set(row_schema)
