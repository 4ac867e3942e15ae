"""Survey outcome events on the real broker and PostgreSQL, through the actions service (consumer and
scheduler): invitations sent by the scheduler, the notifier's outcomes and the answers produced to their
topics as the notifier and the collector would. One ``sent`` per delivered invitation, one ``failed``,
``answered`` once even when answered twice (a duplicate and a re-click), an answer before the delivery
outcome gives ``sent`` then ``answered`` (the late outcome adds nothing), and a full replay of the
outcomes and ratings topics (stored offsets rewound, the service restarted) publishes no new event."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.actions.bootstrap import create_app
from services.actions.survey_handler import INVITE_PREFIX
from services.collector.domain import RatingIn, normalize
from services.collector.intake import to_record
from shared import events as ev
from shared.envelope import Envelope, OutgoingRecord, encode
from shared.topics import Topics
from tests.helpers import events_to_end, produce, read_events, running, wait_for
from tests.infra import Infra
from tests.integration.test_actions import settings, sql

pytestmark = pytest.mark.integration

SURVEYS = """
version: 1
surveys:
  - id: it-outcomes
    on: [order.delivered]
    metric: csat
    scale: 1-5
    question:
      en: How was your delivery?
      fr: Votre livraison s'est-elle bien passée ?
    channels: [email]
    delay: 0s
    sampling: 100
    recontact_days: 30
    answer_window: 1h
    max_age: 3d
"""
CUSTOMERS = [f"cus-o{n}" for n in range(12)]


def interaction(cid: str, *, topic: str) -> OutgoingRecord:
    now = datetime.now(UTC)
    data = ev.InteractionRecorded(
        interaction_id=f"order-{cid}-delivered",
        type="order.delivered",
        customer=ev.CustomerRef(id=cid, email=f"{cid}@example.com", locale="fr"),
        occurred_at=now,
        received_at=now,
        segment={"store": "paris-1"},
        source="shop",
    )
    return encode(
        topic=topic,
        event_type=ev.INTERACTION_RECORDED,
        source="/collector",
        event_id=data.interaction_id,
        data=data,
        key=cid,
    )


def outcome(iid: str, cid: str, status: ev.OutcomeStatus, *, topic: str) -> OutgoingRecord:
    nid = INVITE_PREFIX + iid
    data = ev.NotificationOutcome(
        notification_id=nid,
        status=status,
        channel=ev.Channel.EMAIL,
        provider="outbox",
        attempts=1,
        at=datetime.now(UTC),
        reason="rejected" if status is ev.OutcomeStatus.FAILED else None,
        customer_id=cid,
    )
    return encode(
        topic=topic,
        event_type=ev.NOTIFICATION_OUTCOME,
        source="/notifier",
        event_id=f"{nid}/{status.value}",
        data=data,
        key=cid,
    )


def answer(
    iid: str, cid: str, score: int, *, topic: str, revision: int = 0, comment: str = ""
) -> OutgoingRecord:
    body: dict[str, Any] = {
        "rating_id": f"email-{iid}",
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": cid},
        "segment": {"store": "paris-1"},
        "survey_id": iid,
        **({"comment": comment} if comment else {}),
    }
    rating = normalize(RatingIn.model_validate(body), received_at=datetime.now(UTC))
    return to_record(rating.model_copy(update={"revision": revision}), topic=topic)


async def read_outcomes(infra: Infra, topics: Topics, *, count: int, timeout_s: float) -> list[Envelope]:
    return await read_events(infra.bootstrap, topics.surveys_outcomes, count=count, timeout_s=timeout_s)


async def stored_offsets(database_url: str, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    rows = await sql(
        database_url,
        "SELECT topic, partition, next_offset FROM ops.consumer_offsets "
        "WHERE consumer_group = :g AND topic = ANY(:t)",
        g=group,
        t=topics,
    )
    return {(r.topic, r.partition): int(r.next_offset) for r in rows}


async def test_outcomes_are_published_once_per_change_and_a_replay_publishes_nothing_new(
    infra: Infra, database_url: str, topics: Topics, tmp_path: Path
) -> None:
    surveys_file = tmp_path / "surveys.yaml"
    surveys_file.write_text(SURVEYS, encoding="utf-8")
    cfg = settings(infra, database_url, topics, surveys_file=surveys_file)

    async def consumed() -> int:
        """Records of the outcomes and ratings topics the service applied (its stored next offsets)."""
        offsets = await stored_offsets(database_url, cfg.consumer_group, [topics.outcomes, topics.ratings])
        return sum(offsets.values())

    async with running(create_app(cfg)):
        await produce(infra.bootstrap, [interaction(c, topic=topics.interactions) for c in CUSTOMERS])
        requested = await read_events(
            infra.bootstrap, topics.notifications, count=len(CUSTOMERS), timeout_s=30
        )
        inv = {
            e.data.customer_id: e.data.notification_id.removeprefix(INVITE_PREFIX)
            for e in requested
            if isinstance(e.data, ev.NotificationRequested)
            and e.data.notification_id.startswith(INVITE_PREFIX)
        }
        assert set(inv) == set(CUSTOMERS)
        delivered, failed, early, twice = CUSTOMERS[:6], CUSTOMERS[6], CUSTOMERS[7:10], CUSTOMERS[10]
        sent = ev.OutcomeStatus.SENT
        first = [
            *(outcome(inv[c], c, sent, topic=topics.outcomes) for c in [*delivered, twice]),
            outcome(inv[failed], failed, ev.OutcomeStatus.FAILED, topic=topics.outcomes),
        ]
        answers = [
            answer(inv[early[0]], early[0], 4, topic=topics.ratings, comment="Rapide et soigné"),
            *(answer(inv[c], c, 5, topic=topics.ratings) for c in early[1:]),
            # answered twice: the same answer again (a double click), then a re-click's replacement
            answer(inv[twice], twice, 2, topic=topics.ratings),
            answer(inv[twice], twice, 2, topic=topics.ratings),
            answer(inv[twice], twice, 4, topic=topics.ratings, revision=1, comment="En fait, très bien"),
        ]
        await produce(infra.bootstrap, first + answers)
        expected = Counter(
            {
                **{f"survey-outcome-{inv[c]}-sent": 1 for c in [*delivered, *early, twice]},
                f"survey-outcome-{inv[failed]}-failed": 1,
                **{f"survey-outcome-{inv[c]}-answered": 1 for c in [*early, twice]},
            }
        )

        async def published() -> list[Envelope]:
            return await read_outcomes(infra, topics, count=sum(expected.values()), timeout_s=2)

        events = await wait_for(published, until=lambda es: len(es) >= sum(expected.values()), timeout_s=45)
        # The early answers' outcomes come late (the notifier was slow): nothing changes, nothing is added.
        await produce(infra.bootstrap, [outcome(inv[c], c, sent, topic=topics.outcomes) for c in early])
        # Read once the service has applied every outcome and answer produced so far.
        await wait_for(consumed, until=lambda n: n == len(first) + len(answers) + len(early), timeout_s=30)
        # It publishes a batch's outcomes before storing its offsets: the topic is complete now.
        events = await events_to_end(infra.bootstrap, topics.surveys_outcomes)
        assert Counter(e.id for e in events) == expected
        by_id = {e.id: e.data for e in events}
        for c in early:  # the answer proved the sending: sent (inferred), then answered, in that order
            mine = [e.id for e in events if e.subject == inv[c]]
            assert mine == [f"survey-outcome-{inv[c]}-sent", f"survey-outcome-{inv[c]}-answered"]
            assert by_id[mine[0]].inferred
        first_answer = by_id[f"survey-outcome-{inv[twice]}-answered"]
        assert isinstance(first_answer, ev.SurveyOutcome)
        assert first_answer.has_comment is False  # the first answer's, not the re-click's
        comment = by_id[f"survey-outcome-{inv[early[0]]}-answered"]
        assert isinstance(comment, ev.SurveyOutcome) and comment.has_comment is True
        failure = by_id[f"survey-outcome-{inv[failed]}-failed"]
        assert isinstance(failure, ev.SurveyOutcome)
        assert (failure.reason, failure.customer_id, failure.survey_id, failure.segment) == (
            "rejected",
            failed,
            "it-outcomes",
            {"store": "paris-1"},
        )
        for e in events:
            assert isinstance(e.data, ev.SurveyOutcome) and e.type == ev.SURVEY_OUTCOME
            assert e.key == e.data.customer_id and e.subject == e.data.invitation_id
        rows = await sql(
            database_url,
            "SELECT customer_id, delivery, answered_at IS NOT NULL AS answered, answered_with_comment "
            "FROM actions.survey_invitations",
        )
        state = {r.customer_id: (r.delivery, r.answered, r.answered_with_comment) for r in rows}
        assert state[twice] == ("sent", True, False) and state[CUSTOMERS[11]] == ("pending", False, False)
        assert state[failed] == ("failed", False, False)
        # Upstream replays: every outcome and answer published again.
        await produce(infra.bootstrap, first + answers)
        total = 2 * (len(first) + len(answers)) + len(early)  # records on the outcomes and ratings topics
        await wait_for(consumed, until=lambda n: n == total, timeout_s=30)
    # The whole of both topics once more: stored offsets rewound, the service restarted.
    await sql(
        database_url,
        "UPDATE ops.consumer_offsets SET next_offset = 0 WHERE consumer_group = :g AND topic = ANY(:t)",
        g=cfg.consumer_group,
        t=[topics.outcomes, topics.ratings],
    )
    async with running(create_app(cfg)):
        await wait_for(consumed, until=lambda n: n == total, timeout_s=45)
        events = await events_to_end(infra.bootstrap, topics.surveys_outcomes)
    assert Counter(e.id for e in events) == expected
