"""Score-changed and segment-alert events: published after the counters change, once per move/episode.

A week that collapses against the previous one is a one-look comparison (the scores API's
``significant_drop``), not an alert: drift alerts need closed days (tests/integration/test_scorer_drift.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.scorer.bootstrap import create_app
from services.scorer.evaluator import ScoreEvaluator
from services.scorer.repository.events import PgScoreEvents
from shared import events as ev
from shared.db import make_engine
from shared.envelope import OutgoingRecord, decode
from shared.topics import Topics
from tests.helpers import produce, read_events, running, wait_for
from tests.infra import Infra
from tests.integration.test_scorer_queries import rating, scorer_settings, stored
from tests.scorer_checks import fetch_value

pytestmark = pytest.mark.integration


def ratings_for_a_drop(topic: str) -> list[OutgoingRecord]:
    """Last week everything was perfect; this week store "bad" collapsed, store "good" did not."""
    out = []
    for store in ("bad", "good"):
        out += [
            rating(f"{store}-prev-{i}", 5, topic=topic, ago=timedelta(days=10), store=store)
            for i in range(40)
        ]
    out += [rating(f"bad-now-{i}", 1, topic=topic, ago=timedelta(hours=1), store="bad") for i in range(40)]
    out += [rating(f"good-now-{i}", 5, topic=topic, ago=timedelta(hours=1), store="good") for i in range(40)]
    return out


async def test_score_changes_and_alerts_reach_the_scores_topic(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    await produce(infra.bootstrap, ratings_for_a_drop(topics.ratings))
    settings = scorer_settings(infra, database_url, topics, event_windows=["7d"], score_event_interval_s=0.3)
    async with running(create_app(settings)):
        await wait_for(lambda: stored(database_url), until=lambda n: n == 160, timeout_s=60)
        events = await read_events(infra.bootstrap, topics.scores, count=5, timeout_s=30)
        changes = {e.key: e.data for e in events if isinstance(e.data, ev.ScoreChanged)}
        alerts = sorted((e.key or "", e.data.reason) for e in events if isinstance(e.data, ev.SegmentAlert))
        assert set(changes) == {"*", "store=bad", "store=good"}
        assert (changes["*"].score, changes["*"].responses, changes["*"].previous) == (50.0, 80, 100.0)
        assert changes["store=bad"].delta == -100.0 and changes["store=good"].delta == 0.0
        assert alerts == [("*", "below_threshold"), ("store=bad", "below_threshold")]
        below = next(e.data for e in events if isinstance(e.data, ev.SegmentAlert) and e.key == "store=bad")
        assert (
            below.threshold == 70.0 and below.segment_attributes == {"store": "bad"} and below.drift is None
        )
        assert all(e.type in (ev.SCORE_CHANGED, ev.SEGMENT_ALERT) and e.source == "/scorer" for e in events)
        # One more rating for "good": its score does not move (100 %), the global one does.
        await produce(infra.bootstrap, [rating("good-extra", 5, topic=topics.ratings, store="good")])
        await wait_for(lambda: stored(database_url), until=lambda n: n == 161, timeout_s=30)
        more = await read_events(infra.bootstrap, topics.scores, count=6, timeout_s=30)
        first_ids = {e.id for e in events}
        new = [e for e in more if e.id not in first_ids]
        assert len(more) == 6 and len(new) == 1
        assert new[0].key == "*" and isinstance(new[0].data, ev.ScoreChanged) and new[0].data.responses == 81
    remaining = await fetch_value(database_url, "SELECT count(*) FROM scorer.dirty_segments")
    assert remaining == 0


async def test_a_crash_before_saving_republishes_the_same_ids(
    infra: Infra, database_url: str, topics: Topics
) -> None:
    await produce(infra.bootstrap, ratings_for_a_drop(topics.ratings))
    settings = scorer_settings(infra, database_url, topics, event_windows=["7d"])
    async with running(create_app(settings)):
        await wait_for(lambda: stored(database_url), until=lambda n: n == 160, timeout_s=60)
    engine = make_engine(database_url)
    sent: list[list[Any]] = []

    async def publish_then_crash(records: list[OutgoingRecord]) -> None:
        sent.append([decode(headers=r.headers, key=r.key, value=r.value).id for r in records])
        raise ConnectionError("the process died after the broker acknowledged")

    async def publish(records: list[OutgoingRecord]) -> None:
        sent.append([decode(headers=r.headers, key=r.key, value=r.value).id for r in records])

    try:
        with pytest.raises(ConnectionError):
            await ScoreEvaluator(
                store=PgScoreEvents(engine), settings=settings, publish=publish_then_crash
            ).run_once()
        result = await ScoreEvaluator(
            store=PgScoreEvents(engine), settings=settings, publish=publish
        ).run_once()
        assert (result.score_events, result.alerts) == (3, 2)
        assert sent[0] == sent[1] and len(sent[0]) == 5
        # Nothing changed since: nothing to publish, and the dirty marks are gone.
        again = await ScoreEvaluator(
            store=PgScoreEvents(engine), settings=settings, publish=publish
        ).run_once()
        assert (again.segments, again.score_events, again.alerts) == (0, 0, 0)
    finally:
        await engine.dispose()
