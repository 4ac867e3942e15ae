"""Survey outcome events from the invitations the stores changed: which change publishes what, in which
order, with which id; the payload carries ids only and validates against the committed schema."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from services.actions.publishing import survey_outcome_record
from services.actions.surveys.decisions import Delivery
from services.actions.surveys.outcome_events import (
    MarkedInvitation,
    all_outcome_events,
    outcome_event_id,
    outcome_events,
)
from shared import events as ev
from shared.envelope import decode
from shared.events import SurveyOutcomeKind as K
from shared.topics import Topics

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
REQUESTED = NOW - timedelta(minutes=5)
ANSWERED = NOW - timedelta(minutes=1)
P, S, F, X, U = Delivery.PENDING, Delivery.SENT, Delivery.FAILED, Delivery.SUPPRESSED, Delivery.UNKNOWN


def marked(
    before: Delivery, after: Delivery, *, answered: bool = False, comment: bool = False, iid: str = "inv-1"
) -> MarkedInvitation:
    return MarkedInvitation(
        invitation_id=iid,
        survey_id="post-delivery",
        customer_id="cus-1",
        channel="email",
        segment={"store": "paris-1"},
        delivery=after,
        delivery_before=before,
        sent_at=REQUESTED if after is S else None,
        answered=answered,
        answered_at=ANSWERED if answered else None,
        answered_with_comment=comment,
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # the notifier's outcome of the invitation's message
        (marked(P, S), [(K.SENT, NOW, False)]),
        (marked(U, S), [(K.SENT, NOW, False)]),  # an unknown outcome reconciled to sent
        (marked(P, F), [(K.FAILED, NOW, False)]),
        (marked(U, F), [(K.FAILED, NOW, False)]),
        (marked(P, X), [(K.SUPPRESSED, NOW, False)]),
        (marked(P, U), []),  # unknown is not final: nothing yet
        (marked(U, U), []),
        # the first answer; before any outcome (or after an unknown one) it proves the sending
        (marked(P, S, answered=True), [(K.SENT, REQUESTED, True), (K.ANSWERED, ANSWERED, False)]),
        (marked(U, S, answered=True), [(K.SENT, REQUESTED, True), (K.ANSWERED, ANSWERED, False)]),
        (marked(S, S, answered=True), [(K.ANSWERED, ANSWERED, False)]),  # sent was published already
        (marked(F, F, answered=True), [(K.ANSWERED, ANSWERED, False)]),  # the failure stands as published
        (marked(X, X, answered=True), [(K.ANSWERED, ANSWERED, False)]),
    ],
)
def test_each_change_publishes_its_outcomes_in_order(
    change: MarkedInvitation, expected: list[tuple[K, datetime, bool]]
) -> None:
    events = outcome_events(change, at=NOW)
    assert [(e.outcome, e.occurred_at, e.inferred) for e in events] == expected
    for e in events:
        assert (e.invitation_id, e.survey_id, e.customer_id, e.channel, e.segment) == (
            "inv-1",
            "post-delivery",
            "cus-1",
            "email",
            {"store": "paris-1"},
        )


@pytest.mark.parametrize("comment", [True, False])
def test_answered_carries_whether_it_had_a_comment_and_only_answered_does(comment: bool) -> None:
    events = outcome_events(marked(P, S, answered=True, comment=comment), at=NOW)
    assert [e.has_comment for e in events] == [None, comment]


def test_a_failure_keeps_the_notifiers_reason_and_a_sent_none() -> None:
    assert outcome_events(marked(P, F), at=NOW, reason="rejected")[0].reason == "rejected"
    assert outcome_events(marked(P, X), at=NOW, reason="opted_out")[0].reason == "opted_out"
    assert outcome_events(marked(P, S), at=NOW, reason="ignored")[0].reason is None


def test_an_inferred_sent_without_a_request_time_takes_the_answers() -> None:
    no_request = replace(marked(P, S, answered=True), sent_at=None)
    assert outcome_events(no_request, at=NOW)[0].occurred_at == ANSWERED


def test_ids_are_per_invitation_and_outcome_and_the_batch_order_is_by_invitation() -> None:
    assert outcome_event_id("inv-1", K.SENT) == "survey-outcome-inv-1-sent"
    assert outcome_event_id("inv-1", K.ANSWERED) == "survey-outcome-inv-1-answered"
    changes = [marked(P, S, iid="b"), marked(P, S, answered=True, iid="a"), marked(P, F, iid="c")]
    events = all_outcome_events(changes, at={"b": NOW}, reasons={"c": "rejected"}, default_at=ANSWERED)
    assert [(e.invitation_id, e.outcome) for e in events] == [
        ("a", K.SENT),
        ("a", K.ANSWERED),
        ("b", K.SENT),
        ("c", K.FAILED),
    ]
    assert [e.occurred_at for e in events][2:] == [NOW, ANSWERED]  # c had no time of its own
    assert events[3].reason == "rejected"
    in_any_order = all_outcome_events(reversed(changes), default_at=NOW)
    assert in_any_order == all_outcome_events(changes, default_at=NOW)


def test_the_record_is_keyed_by_customer_with_the_deterministic_id_and_validates() -> None:
    topics = Topics(prefix="t.")
    event = outcome_events(marked(P, S, answered=True, comment=True), at=NOW)[1]
    record = survey_outcome_record(topics, event)
    assert record.topic == "t.csat.surveys.outcomes.v1" and record.key == b"cus-1"
    envelope = decode(headers=record.headers, key=record.key, value=record.value)
    assert (envelope.id, envelope.type, envelope.subject) == (
        "survey-outcome-inv-1-answered",
        ev.SURVEY_OUTCOME,
        "inv-1",
    )
    assert envelope.data == event
    root = Path(__file__).resolve().parents[2]
    schema = json.loads((root / "contracts" / "schemas" / f"{ev.SURVEY_OUTCOME}.json").read_text())
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    payload = json.loads(event.model_dump_json())
    assert list(validator.iter_errors(payload)) == []
    assert list(validator.iter_errors({**payload, "outcome": "expired"}))  # not an outcome we publish
    # Ids only: nothing of the person beyond the customer id the invited event's key already carries.
    assert set(payload) == {
        "invitation_id",
        "survey_id",
        "customer_id",
        "channel",
        "segment",
        "outcome",
        "occurred_at",
        "reason",
        "has_comment",
        "inferred",
    }
