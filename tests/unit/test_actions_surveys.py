"""Surveys in the actions use cases, on in-memory stores: interactions -> invitations (sampling decided by
the interaction, throttle across a customer's interactions, opt-out), the scheduler's tick -> one
invitation per row with the collector's signed link, outcomes and answers -> the one reminder, only to
the unanswered. The same on PostgreSQL and the real stack: tests/e2e/test_surveys.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.actions.survey_handler import INVITE_PREFIX, REMINDER_PREFIX, LinkMaker, SurveyHandler
from services.actions.surveybook import SurveyBook
from services.actions.surveys.decisions import in_sample, invitation_id
from services.actions.surveys.definitions import load_surveys_text
from services.actions.yamlio import load_yaml
from services.collector.links import LinkSigner
from shared import events as ev
from shared.consumer import Received
from shared.envelope import Envelope, OutgoingRecord, decode
from tests.fakes.actions_store import MemoryActions
from tests.unit.test_actions_handlers import TOPICS, Clock, handler

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "unit-signing-secret-0123456789"
SURVEYS = """
version: 1
surveys:
  - id: post-delivery
    on: [order.delivered]
    metric: csat
    scale: 1-5
    question:
      en: How was your delivery?
      fr: Votre livraison s'est-elle bien passée ?
    follow_up:
      en: What could we do better?
      fr: Que pourrions-nous améliorer ?
    channels: [email, sms]
    delay: 0s
    sampling: 50
    recontact_days: 30
    answer_window: 7d
    reminder: {after: 3d}
    max_age: 3d
"""


def surveys() -> SurveyHandler:
    book = SurveyBook(
        file_document=load_yaml(SURVEYS), file_surveys=load_surveys_text(SURVEYS), file_origin="test"
    )
    return SurveyHandler(
        book=book, topics=TOPICS, links=LinkMaker(base_url="https://c.example", secret=SECRET), brand="Shop"
    )


def interaction(n: int, customer: str, *, at: datetime = NOW) -> ev.InteractionRecorded:
    return ev.InteractionRecorded(
        interaction_id=f"order-{n}-delivered",
        type="order.delivered",
        customer=ev.CustomerRef(id=customer, email=f"{customer}@example.com", locale="fr" if n % 2 else "en"),
        occurred_at=at,
        received_at=at,
        segment={"store": f"s{n % 3}"},
        source="shop",
    )


def received(events: Sequence[Any]) -> list[Received]:
    kinds: dict[type, str] = {
        ev.InteractionRecorded: ev.INTERACTION_RECORDED,
        ev.RatingSubmitted: ev.RATING_SUBMITTED,
        ev.NotificationOutcome: ev.NOTIFICATION_OUTCOME,
    }
    return [
        Received(
            envelope=Envelope(
                id=f"e-{i}",
                type=kinds[type(e)],
                source="/t",
                time=NOW,
                subject=None,
                key=None,
                data=e,
                extensions={},
            ),
            topic="unit.t",
            partition=0,
            offset=i,
        )
        for i, e in enumerate(events)
    ]


def notes(records: Sequence[OutgoingRecord]) -> list[ev.NotificationRequested]:
    out = []
    for r in records:
        if r.topic == TOPICS.surveys_invited:
            continue
        data = decode(headers=r.headers, key=r.key, value=r.value).data
        assert isinstance(data, ev.NotificationRequested)
        out.append(data)
    return out


def expected(events: Sequence[ev.InteractionRecorded]) -> set[str]:
    """One invitation per customer: their first sampled interaction (the others are throttled)."""
    invited: dict[str, str] = {}
    for e in events:
        if e.customer.id not in invited and in_sample("post-delivery", e.interaction_id, 50):
            invited[e.customer.id] = invitation_id("post-delivery", e.interaction_id)
    return set(invited.values())


async def test_invitations_follow_sampling_and_throttle_and_a_replay_adds_none() -> None:
    db, clock, sv = MemoryActions(), Clock(), surveys()
    clock.now = NOW
    h = handler(clock)
    h._surveys = sv  # the handler under test, with the surveys wired as bootstrap does
    events = [interaction(n, f"c{n % 60}") for n in range(100)]  # 40 customers twice, 20 once
    async with db.begin() as stores:
        await h(stores, received(events))
    assert set(db.tables.invitations) == expected(events)
    assert 15 < len(db.tables.invitations) < 45  # about half of 60 customers: the sample is not all or none
    async with db.begin() as stores:
        await h(stores, received(events))
    assert set(db.tables.invitations) == expected(events)


async def test_opted_out_and_unreachable_customers_are_not_invited() -> None:
    db, sv = MemoryActions(), surveys()
    sampled = [n for n in range(200) if in_sample("post-delivery", f"order-{n}-delivered", 50)][:3]
    db.tables.customers["out"] = {"opted_out": True}
    no_address = interaction(sampled[2], "nobody").model_copy(
        update={"customer": ev.CustomerRef(id="nobody")}
    )
    async with db.begin() as stores:
        added = await sv.on_interactions(
            stores, [interaction(sampled[0], "out"), interaction(sampled[1], "in"), no_address], NOW
        )
    assert added == 1
    assert [r.customer_id for r in db.tables.invitations.values()] == ["in"]


async def test_tick_sends_each_invitation_once_with_a_link_the_collector_reads() -> None:
    db, sv = MemoryActions(), surveys()
    events = [interaction(n, f"c{n}") for n in range(40)]
    async with db.begin() as stores:
        await sv.on_interactions(stores, events, NOW)
        fired, records = await sv.fire(stores, now=NOW, limit=500)
    sent = notes(records)
    assert fired == len(sent) == len(db.tables.invitations) > 0
    signer = LinkSigner(secret=SECRET)
    for note in sent:
        iid = note.notification_id.removeprefix(INVITE_PREFIX)
        row = db.tables.invitations[iid]
        assert note.channel is ev.Channel.EMAIL and note.recipient.email == f"{row.customer_id}@example.com"
        survey = note.context["survey"]
        assert survey["question"] == (
            "Votre livraison s'est-elle bien passée ?" if row.locale == "fr" else "How was your delivery?"
        )
        token = survey["answer_url"].removeprefix("https://c.example/v1/email/")
        link = signer.verify(token, now=NOW)
        assert (link.survey_id, link.customer_id, link.scale) == (iid, row.customer_id, "1-5")
        assert link.expires_at == row.expires_at == NOW + timedelta(days=7)
        assert link.segment == dict(row.segment)
    async with db.begin() as stores:
        assert await sv.fire(stores, now=NOW + timedelta(hours=1), limit=500) == (0, [])


async def test_an_in_app_invitation_goes_to_the_notifier_for_the_collector_and_gets_no_reminder() -> None:
    book = SurveyBook(
        file_document=load_yaml(SURVEYS.replace("[email, sms]", "[in_app]")),
        file_surveys=load_surveys_text(SURVEYS.replace("[email, sms]", "[in_app]")),
        file_origin="test",
    )
    sv = SurveyHandler(
        book=book, topics=TOPICS, links=LinkMaker(base_url="https://c.example", secret=SECRET), brand="Shop"
    )
    db = MemoryActions()
    async with db.begin() as stores:
        await sv.on_interactions(stores, [interaction(n, f"c{n}") for n in range(20)], NOW)
        _, records = await sv.fire(stores, now=NOW, limit=500)
    sent = notes(records)
    assert sent and all(n.channel is ev.Channel.IN_APP for n in sent)
    for note in sent:  # the notifier registers the signed link with the collector (survey_inapp)
        row = db.tables.invitations[note.notification_id.removeprefix(INVITE_PREFIX)]
        token = note.context["survey"]["answer_url"].removeprefix("https://c.example/v1/email/")
        link = LinkSigner(secret=SECRET).verify(token, now=NOW)
        assert (note.customer_id, link.customer_id, link.survey_id) == (
            row.customer_id,
            row.customer_id,
            row.invitation_id,
        )
    outcomes = [
        ev.NotificationOutcome(
            notification_id=n.notification_id,
            status=ev.OutcomeStatus.SENT,
            channel=ev.Channel.IN_APP,
            provider="collector",
            attempts=1,
            at=NOW,
        )
        for n in sent
    ]
    h = handler(Clock())
    h._surveys = sv
    async with db.begin() as stores:
        await h(stores, received(outcomes))
    async with db.begin() as stores:
        _, reminders = await sv.fire(stores, now=NOW + timedelta(days=3, seconds=1), limit=500)
    assert notes(reminders) == []  # the widget shows it on every visit until it is answered


def invited(records: Sequence[OutgoingRecord]) -> list[tuple[bytes | None, ev.SurveyInvited]]:
    out = []
    for r in records:
        if r.topic == TOPICS.surveys_invited:
            data = decode(headers=r.headers, key=r.key, value=r.value).data
            assert isinstance(data, ev.SurveyInvited)
            out.append((r.key, data))
    return out


async def test_each_invitation_sent_is_published_once_for_the_response_rate_and_reminders_are_not() -> None:
    db, sv = MemoryActions(), surveys()
    async with db.begin() as stores:
        await sv.on_interactions(stores, [interaction(n, f"c{n}") for n in range(40)], NOW)
        _, records = await sv.fire(stores, now=NOW, limit=500)
    published = invited(records)
    assert sorted(e.invitation_id for _, e in published) == sorted(db.tables.invitations)
    for key, e in published:
        row = db.tables.invitations[e.invitation_id]
        assert key == row.customer_id.encode()
        assert (e.survey_id, e.metric, e.scale, e.channel) == ("post-delivery", "csat", "1-5", "email")
        assert e.segment == dict(row.segment) and e.invited_at == NOW and e.expires_at == row.expires_at
    # The reminders three days later are messages, not invitations: nothing more to count.
    async with db.begin() as stores:
        for iid in db.tables.invitations:
            await stores.surveys.mark_delivery(outcomes={iid: ("sent", NOW)})
        _, later = await sv.fire(stores, now=NOW + timedelta(days=3, seconds=1), limit=500)
    assert notes(later) and invited(later) == []


async def test_reminder_goes_once_only_to_the_delivered_unanswered() -> None:
    db, clock, sv = MemoryActions(), Clock(), surveys()
    h = handler(clock)
    h._surveys = sv
    async with db.begin() as stores:
        await sv.on_interactions(stores, [interaction(n, f"c{n}") for n in range(60)], NOW)
        _, records = await sv.fire(stores, now=NOW, limit=500)
    ids = [n.notification_id.removeprefix(INVITE_PREFIX) for n in notes(records)]
    answered, failed = set(ids[::3]), ids[1]
    outcomes = [
        ev.NotificationOutcome(
            notification_id=INVITE_PREFIX + i,
            status=ev.OutcomeStatus.FAILED if i == failed else ev.OutcomeStatus.SENT,
            channel=ev.Channel.EMAIL,
            provider="outbox",
            attempts=1,
            at=NOW,
        )
        for i in ids
    ]
    answers = [
        ev.RatingSubmitted.model_validate(
            {
                "rating_id": f"email-{i}",
                "metric": "csat",
                "scale": "1-5",
                "score": 4,
                "normalized": 0.75,
                "positive": True,
                "sentiment": "positive",
                "customer": {"id": db.tables.invitations[i].customer_id},
                "occurred_at": NOW + timedelta(hours=1),
                "received_at": NOW + timedelta(hours=1),
                "survey_id": i,
                "comment": "fast" if n % 2 else None,
            }
        )
        for n, i in enumerate(sorted(answered))
    ]
    async with db.begin() as stores:
        await h(stores, received([*outcomes, *answers]))
    async with db.begin() as stores:
        assert await sv.fire(stores, now=NOW + timedelta(days=2), limit=500) == (0, [])
        fired, reminders = await sv.fire(stores, now=NOW + timedelta(days=3, seconds=1), limit=500)
    reminded = {n.notification_id.removeprefix(REMINDER_PREFIX) for n in notes(reminders)}
    assert reminded == set(ids) - answered - {failed}
    assert all(n.context["survey"]["reminder"] for n in notes(reminders))
    assert fired == len(ids)  # every row was looked at once more, at its reminder time
    async with db.begin() as stores:
        assert await sv.fire(stores, now=NOW + timedelta(days=4), limit=500) == (0, [])
    rows = db.tables.invitations.values()
    assert sum(r.answered_at is not None for r in rows) == len(answered)
    assert sum(r.answered_with_comment for r in rows) == len(answered) // 2


async def test_an_erased_customer_is_never_invited_and_pending_invitations_and_reminders_stop() -> None:
    db, sv = MemoryActions(), surveys()
    sampled = [n for n in range(200) if in_sample("post-delivery", f"order-{n}-delivered", 50)][:4]
    db.tables.erased.add("gone")  # erased before the interaction came (or while it was decided)
    async with db.begin() as stores:
        added = await sv.on_interactions(
            stores,
            [
                interaction(sampled[0], "gone"),
                interaction(sampled[1], "later"),
                interaction(sampled[2], "reminded"),
                interaction(sampled[3], "kept"),
            ],
            NOW,
        )
    assert added == 3
    by_customer = {r.customer_id: i for i, r in db.tables.invitations.items()}
    assert set(by_customer) == {"later", "reminded", "kept"}
    async with db.begin() as stores:
        _, first = await sv.fire(stores, now=NOW, limit=500)
    assert {n.customer_id for n in notes(first)} == {"later", "reminded", "kept"}
    # "reminded" is delivered, then erased before the reminder; an invitation decided while "later"
    # was being erased escaped the erasure's own update: the send-time check stops both.
    for cid in ("reminded", "kept"):
        iid = by_customer[cid]
        db.tables.invitations[iid] = replace(db.tables.invitations[iid], delivery="sent")
    db.tables.erased.add("reminded")
    async with db.begin() as stores:
        _, reminders = await sv.fire(stores, now=NOW + timedelta(days=3, seconds=1), limit=500)
    assert [n.customer_id for n in notes(reminders)] == ["kept"]
    assert db.tables.invitations[by_customer["reminded"]].stop_reason == "erased"
    # An invitation stored while its customer was being erased (the erasure's update did not see it)
    # is stopped when it comes due.
    late = "late-invitation"
    db.tables.invitations[late] = replace(
        db.tables.invitations[by_customer["kept"]],
        invitation_id=late,
        customer_id="late",
        status="scheduled",
        delivery="pending",
        stop_reason=None,
    )
    db.tables.next_at[late] = NOW
    db.tables.erased.add("late")
    async with db.begin() as stores:
        _, sent = await sv.fire(stores, now=NOW + timedelta(days=3, seconds=2), limit=500)
    assert notes(sent) == []
    stopped = db.tables.invitations[late]
    assert (stopped.status, stopped.stop_reason) == ("stopped", "erased")


async def test_links_carry_the_reclick_window_and_a_reclick_answers_the_invitation_once() -> None:
    db, clock, sv = MemoryActions(), Clock(), surveys()
    h = handler(clock)
    h._surveys = sv
    async with db.begin() as stores:
        await sv.on_interactions(stores, [interaction(n, f"c{n}") for n in range(10)], NOW)
        _, records = await sv.fire(stores, now=NOW, limit=500)
    note = notes(records)[0]
    token = note.context["survey"]["answer_url"].removeprefix("https://c.example/v1/email/")
    link = LinkSigner(secret=SECRET).verify(token, now=NOW)
    assert link.reclick_window_s == 15 * 60  # the survey's reclick_window (default 15m)
    iid = link.survey_id

    def answer(score: int, revision: int, at: datetime) -> ev.RatingSubmitted:
        return ev.RatingSubmitted.model_validate(
            {
                "rating_id": "email-x",
                "metric": "csat",
                "scale": "1-5",
                "score": score,
                "normalized": (score - 1) / 4,
                "positive": score >= 4,
                "sentiment": "positive" if score >= 4 else "negative",
                "customer": {"id": link.customer_id},
                "occurred_at": at,
                "received_at": at,
                "survey_id": iid,
                "revision": revision,
                **({"comment": "changed my mind"} if revision else {}),
            }
        )

    first_at = NOW + timedelta(minutes=1)
    async with db.begin() as stores:
        await h(stores, received([answer(2, 0, first_at)]))
    async with db.begin() as stores:
        await h(stores, received([answer(5, 1, first_at + timedelta(minutes=3))]))
    rows = [r for r in db.tables.invitations.values() if r.answered_at is not None]
    assert len(rows) == 1 and rows[0].invitation_id == iid
    # Answered once, at the first answer: the response rate and time to answer do not move with re-clicks.
    assert rows[0].answered_at == first_at and not rows[0].answered_with_comment


def outcome_events(records: Sequence[OutgoingRecord]) -> list[tuple[str, ev.SurveyOutcome]]:
    """(event id, payload) of the survey outcome records among a batch's output."""
    out = []
    for r in records:
        if r.topic == TOPICS.surveys_outcomes:
            envelope = decode(headers=r.headers, key=r.key, value=r.value)
            assert isinstance(envelope.data, ev.SurveyOutcome)
            assert r.key == envelope.data.customer_id.encode()
            out.append((envelope.id, envelope.data))
    return out


def survey_answer(iid: str, customer: str, *, at: datetime, revision: int = 0, comment: bool = False) -> Any:
    return ev.RatingSubmitted.model_validate(
        {
            "rating_id": f"email-{iid}",
            "metric": "csat",
            "scale": "1-5",
            "score": 4 + revision % 2,
            "normalized": 0.75,
            "positive": True,
            "sentiment": "positive",
            "customer": {"id": customer},
            "occurred_at": at,
            "received_at": at,
            "survey_id": iid,
            "revision": revision,
            **({"comment": "rapide"} if comment else {}),
        }
    )


def delivery(iid: str, status: ev.OutcomeStatus, *, reason: str | None = None) -> ev.NotificationOutcome:
    return ev.NotificationOutcome(
        notification_id=INVITE_PREFIX + iid,
        status=status,
        channel=ev.Channel.EMAIL,
        provider="outbox",
        attempts=1,
        at=NOW + timedelta(seconds=5),
        reason=reason,
    )


async def test_outcome_events_are_published_once_per_state_change_whatever_the_replays() -> None:
    db, sv = MemoryActions(), surveys()
    h = handler(Clock())
    h._surveys = sv
    async with db.begin() as stores:
        await sv.on_interactions(stores, [interaction(n, f"c{n}") for n in range(40)], NOW)
        await sv.fire(stores, now=NOW, limit=500)
    ids = sorted(db.tables.invitations)
    cid = {i: db.tables.invitations[i].customer_id for i in ids}
    delivered, failed, suppressed, early = ids[:6], ids[6], ids[7], ids[8:10]
    at = NOW + timedelta(minutes=2)
    first = [
        *(delivery(i, ev.OutcomeStatus.SENT) for i in delivered),
        delivery(failed, ev.OutcomeStatus.FAILED, reason="rejected"),
        delivery(suppressed, ev.OutcomeStatus.SUPPRESSED, reason="opted_out"),
        delivery(ids[10], ev.OutcomeStatus.UNKNOWN),  # not final: nothing published
        # answered before their outcome came (one with a comment), and a delivered one answered
        survey_answer(early[0], cid[early[0]], at=at, comment=True),
        survey_answer(early[1], cid[early[1]], at=at),
        survey_answer(delivered[0], cid[delivered[0]], at=at),
    ]
    async with db.begin() as stores:
        published = outcome_events(await h(stores, received(first)))
    expected = {
        **{f"survey-outcome-{i}-sent": "sent" for i in [*delivered, *early]},
        f"survey-outcome-{failed}-failed": "failed",
        f"survey-outcome-{suppressed}-suppressed": "suppressed",
        **{f"survey-outcome-{i}-answered": "answered" for i in [*early, delivered[0]]},
    }
    assert {eid: e.outcome.value for eid, e in published} == expected
    assert len(published) == len(expected)  # each once
    by_id = dict(published)
    for i in early:  # the answer proves the sending: sent (inferred) comes before answered
        order = [eid for eid, _ in published if eid.startswith(f"survey-outcome-{i}-")]
        assert order == [f"survey-outcome-{i}-sent", f"survey-outcome-{i}-answered"]
        assert by_id[order[0]].inferred and by_id[order[1]].occurred_at == at
    assert by_id[f"survey-outcome-{early[0]}-answered"].has_comment is True
    assert by_id[f"survey-outcome-{early[1]}-answered"].has_comment is False
    assert by_id[f"survey-outcome-{failed}-failed"].reason == "rejected"
    assert not by_id[f"survey-outcome-{delivered[0]}-sent"].inferred
    sent = by_id[f"survey-outcome-{delivered[1]}-sent"]
    assert (sent.survey_id, sent.channel, sent.segment) == (
        "post-delivery",
        "email",
        dict(db.tables.invitations[delivered[1]].segment),
    )
    # The same batch again, the late outcomes of the early answers, a re-click and a failure after
    # sending: nothing changes, nothing is published.
    later = [
        *first,
        *(delivery(i, ev.OutcomeStatus.SENT) for i in early),
        survey_answer(early[0], cid[early[0]], at=at + timedelta(minutes=1), revision=1),
        delivery(delivered[1], ev.OutcomeStatus.FAILED),
    ]
    async with db.begin() as stores:
        assert outcome_events(await h(stores, received(later))) == []
    # The unknown one reconciled to sent later: published then.
    async with db.begin() as stores:
        last = outcome_events(await h(stores, received([delivery(ids[10], ev.OutcomeStatus.SENT)])))
    assert [eid for eid, _ in last] == [f"survey-outcome-{ids[10]}-sent"]
