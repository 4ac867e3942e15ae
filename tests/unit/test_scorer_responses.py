"""Survey response rates in the scorer, on the in-memory store: invitations and answers (ratings naming an
invitation) counted once per segment and hour of the invitation, whichever arrives first; the maths and
the low-response flag; GET /v1/scores reporting answered / invited exactly.

The same on PostgreSQL and the real broker: tests/integration/test_scorer_responses.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.scorer import responses as rs
from services.scorer.decoding import decode_record
from services.scorer.deps import ScorerDeps
from services.scorer.handlers import make_handler
from services.scorer.response_handler import in_turn, make_response_handler
from services.scorer.routes import scores
from services.scorer.segments import KEY_SEPARATOR
from services.scorer.settings import ScorerSettings
from shared import events as ev
from shared.consumer import Received
from shared.envelope import Envelope, decode, encode
from shared.scales import Metric
from shared.stats import wilson_interval
from tests.credentials import ADMIN, authenticator
from tests.fakes.scorer_store import MemoryScorerStore
from tests.unit.test_scorer_handlers import NOW, TX, Raw, rating, received

PARIS = {"store": "paris-1", "channel": "email"}
LYON = {"store": "lyon-2", "channel": "email"}
SENT = NOW - timedelta(hours=5)


def invitation(n: int, segment: dict[str, str] = PARIS, *, at: datetime = SENT) -> ev.SurveyInvited:
    return ev.SurveyInvited(
        invitation_id=f"inv-{n}",
        survey_id="post-delivery",
        metric=Metric.CSAT,
        scale="1-5",
        channel="email",
        segment=segment,
        invited_at=at,
        expires_at=at + timedelta(days=7),
    )


def invited(data: ev.SurveyInvited, *, offset: int = 0) -> Received:
    """As the scorer's consumer decodes it (the lean rating decoder passes it to the full one)."""
    record = encode(
        topic="surveys",
        event_type=ev.SURVEY_INVITED,
        source="/actions",
        event_id=f"survey-invited-{data.invitation_id}",
        key="cus-1",
        data=data,
    )
    envelope = decode_record(Raw(value=record.value, headers=record.headers, key=record.key))
    assert isinstance(envelope, Envelope) and isinstance(envelope.data, ev.SurveyInvited)
    return Received(envelope=envelope, topic="surveys", partition=0, offset=offset)


def answer(
    n: int, score: int = 4, segment: dict[str, str] = PARIS, *, comment: str | None = None
) -> Received:
    r = rating(f"email-inv-{n}", score, segment=segment, at=SENT + timedelta(hours=1))
    return received(r.model_copy(update={"survey_id": f"inv-{n}", "comment": comment}))


def settings(**values: Any) -> ScorerSettings:
    return ScorerSettings.model_validate({"environment": "test", "min_sample": 5, **values})


def both(store: MemoryScorerStore, cfg: ScorerSettings) -> Any:
    return in_turn(
        make_handler(store=store, tiers=cfg.tiers, clock=lambda: NOW), make_response_handler(store=store)
    )


def figures(store: MemoryScorerStore, key: str) -> tuple[int, int]:
    start, end = rs.window(NOW - timedelta(days=30), NOW)
    counts = store.responses.read(metric="csat", key=key, attributes={}, start=start, end=end)
    return counts.invited, counts.answered


# ---- the maths -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("invited", "answered", "low"),
    [
        (300, 29, True),  # 9.7 % of 300
        (300, 30, False),  # 10 % is not below 10 %
        (29, 0, False),  # too few invitations to say
        (30, 2, True),
    ],
)
def test_low_response_is_a_rate_under_the_threshold_on_enough_invitations(
    invited: int, answered: int, low: bool
) -> None:
    body = rs.body(rs.ResponseCounts(invited, answered), start=SENT, end=NOW, settings=rs.ResponseSettings())
    rr = body["response_rate"]
    assert rr["rate"] == answered / invited and (rr["invited"], rr["answered"]) == (invited, answered)
    assert (rr["ci_low"], rr["ci_high"]) == wilson_interval(answered, invited)
    assert rr["low"] is body["low_response"] is low


def test_no_invitation_means_no_rate_and_no_flag() -> None:
    body = rs.body(rs.ResponseCounts(), start=SENT, end=NOW, settings=rs.ResponseSettings())
    assert body == {"response_rate": None, "completion_rate": None, "low_response": False}
    unanswered = rs.body(rs.ResponseCounts(10, 0), start=SENT, end=NOW, settings=rs.ResponseSettings())
    assert unanswered["response_rate"]["rate"] == 0.0 and unanswered["completion_rate"] is None


def test_completion_is_the_share_of_answers_with_a_comment() -> None:
    body = rs.body(rs.ResponseCounts(300, 90, 30), start=SENT, end=NOW, settings=rs.ResponseSettings())
    done = body["completion_rate"]
    assert (done["rate"], done["answered"], done["commented"]) == (30 / 90, 90, 30)
    assert (done["ci_low"], done["ci_high"]) == wilson_interval(30, 90)


def test_increments_go_to_the_invitation_hour_of_every_segment_key() -> None:
    at = datetime(2026, 11, 23, 9, 41, tzinfo=UTC)
    keys = KEY_SEPARATOR.join(["*", "store=paris-1"])
    moved = [
        rs.Counted("csat", keys, at, invited=True, answered=False),
        rs.Counted("csat", keys, at + timedelta(minutes=5), invited=True, answered=True, commented=True),
        rs.Counted("csat", "*", at - timedelta(hours=1), invited=False, answered=True),
    ]
    nine, eight = at.replace(minute=0), at.replace(hour=8, minute=0)
    assert rs.increments(moved) == [
        rs.ResponseIncrement("csat", "*", eight, 0, 1, 0),
        rs.ResponseIncrement("csat", "*", nine, 2, 1, 1),
        rs.ResponseIncrement("csat", "store=paris-1", nine, 2, 1, 1),
    ]
    assert rs.window(at, at + timedelta(hours=2)) == (nine, nine + timedelta(hours=3))


# ---- the handler -----------------------------------------------------------------------------------------
async def test_each_invitation_and_first_answer_counts_once_whatever_the_order() -> None:
    cfg = settings()
    store = MemoryScorerStore(combinations=cfg.combos)
    handle = both(store, cfg)
    # Batch 1: three Paris invitations, one Lyon; an answer to inv-9 whose invitation is not here yet.
    await handle(TX, [*(invited(invitation(n)) for n in range(3)), invited(invitation(3, LYON)), answer(9)])
    assert figures(store, "*") == (4, 0) and figures(store, "store=paris-1") == (3, 0)
    # Batch 2: answers to inv-0 (twice: a replayed record) and inv-3, then inv-9's invitation arrives.
    await handle(TX, [answer(0, comment="Fast"), answer(0), answer(3, segment=LYON), invited(invitation(9))])
    assert figures(store, "*") == (5, 3)
    assert figures(store, "store=paris-1") == (4, 2) and figures(store, "store=lyon-2") == (1, 1)
    # Batch 3: everything replayed, and a re-click on inv-0 (same rating id, another score): nothing moves.
    await handle(
        TX,
        [
            *(invited(invitation(n)) for n in (0, 1, 2, 9)),
            invited(invitation(3, LYON)),
            answer(0, 2),
            answer(3, segment=LYON),
            answer(9),
        ],
    )
    assert figures(store, "*") == (5, 3) and figures(store, "channel=email|store=paris-1") == (4, 2)
    # Completion: the first answer's comment counts (inv-0's), and only once.
    start, end = rs.window(NOW - timedelta(days=30), NOW)
    counts = store.responses.read(metric="csat", key="*", attributes={}, start=start, end=end)
    assert counts == rs.ResponseCounts(5, 3, 1)
    # The ratings themselves were scored by the rating handler as usual, once each.
    assert set(store.ratings) == {"email-inv-0", "email-inv-3", "email-inv-9"}


async def test_an_invitation_and_its_answer_in_one_batch_count_as_both() -> None:
    cfg = settings()
    store = MemoryScorerStore(combinations=cfg.combos)
    await both(store, cfg)(TX, [answer(1), invited(invitation(1)), invited(invitation(2))])
    assert figures(store, "*") == (2, 1)


async def test_a_batch_without_surveys_leaves_the_response_store_alone() -> None:
    cfg = settings()
    store = MemoryScorerStore(combinations=cfg.combos)
    await both(store, cfg)(TX, [received(rating("plain-1", 5, segment=PARIS))])
    assert store.responses.rows == {} and store.responses.counts == {} and set(store.ratings) == {"plain-1"}


# ---- GET /v1/scores ----------------------------------------------------------------------------------------
@pytest.fixture
async def client() -> Any:
    cfg = settings()
    store = MemoryScorerStore(combinations=cfg.combos)
    handle = both(store, cfg)
    # Paris: 40 invited, 3 answered (7.5 %: low); Lyon: 20 invited, 8 answered (too few to flag).
    await handle(TX, [invited(invitation(n)) for n in range(40)])
    await handle(TX, [invited(invitation(100 + n, LYON)) for n in range(20)])
    await handle(
        TX,
        [answer(n, 5, comment="Quick" if n == 0 else None) for n in range(3)]
        + [answer(100 + n, 4, LYON) for n in range(8)],
    )
    # Nantes x France (not a counted combination): 2 invited, 1 answered.
    nantes = {"store": "nantes", "country": "fr"}
    await handle(
        TX, [invited(invitation(200, nantes)), invited(invitation(201, nantes)), answer(200, 3, nantes)]
    )
    # An invitation sent 40 days ago, answered: outside a 30d window.
    await handle(TX, [invited(invitation(500, at=NOW - timedelta(days=40))), answer(500)])
    deps = ScorerDeps(
        settings=cfg,
        scores=store.session,
        customers=store.session,
        clock=lambda: NOW,
        auth=authenticator("scorer"),
    )
    app = FastAPI()
    app.include_router(scores.router(deps))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://scorer", headers=ADMIN
    ) as c:
        yield c


async def test_scores_report_the_response_rate_of_the_segment_and_flag_low_response(
    client: httpx.AsyncClient,
) -> None:
    paris = (await client.get("/v1/scores", params={"segment": "store:paris-1"})).json()
    rr = paris["response_rate"]
    assert (rr["invited"], rr["answered"], rr["rate"]) == (40, 3, 3 / 40)
    assert (rr["ci_low"], rr["ci_high"]) == wilson_interval(3, 40)
    assert rr["low"] is paris["low_response"] is True
    assert paris["responses"] == 4 and paris["score"] == 100.0  # the existing fields are untouched
    done = paris["completion_rate"]
    assert (done["answered"], done["commented"], done["rate"]) == (3, 1, 1 / 3)
    lyon = (await client.get("/v1/scores", params={"segment": "store:lyon-2"})).json()
    assert (lyon["response_rate"]["rate"], lyon["low_response"]) == (8 / 20, False)
    every = (await client.get("/v1/scores")).json()
    assert (every["response_rate"]["invited"], every["response_rate"]["answered"]) == (62, 12)
    assert every["response_rate"]["rate"] == 12 / 62 and every["low_response"] is False
    # A year's window sees the old invitation too; 7d and 30d windows do not.
    year = (await client.get("/v1/scores", params={"window": "365d"})).json()
    assert (year["response_rate"]["invited"], year["response_rate"]["answered"]) == (63, 13)


async def test_segments_without_counters_read_the_invitation_rows(client: httpx.AsyncClient) -> None:
    # store x country is not a configured combination: the rows answer, by the invitation's segment.
    params = {"segment": ["store:nantes", "country:fr"]}
    body = (await client.get("/v1/scores", params=params)).json()
    assert body["source"] == "ratings" and body["responses"] == 1
    assert (body["response_rate"]["invited"], body["response_rate"]["answered"]) == (2, 1)
    params = {"segment": ["store:paris-1", "country:fr"]}
    assert (await client.get("/v1/scores", params=params)).json()["response_rate"] is None
    # store x channel is one: its counters answer.
    params = {"segment": ["store:paris-1", "channel:email"]}
    counted = (await client.get("/v1/scores", params=params)).json()
    assert counted["source"] == "counters"
    assert (counted["response_rate"]["invited"], counted["response_rate"]["answered"]) == (40, 3)


async def test_a_threshold_from_the_settings() -> None:
    cfg = settings(low_response_rate=0.5, low_response_min_invited=10)
    assert cfg.response_settings == rs.ResponseSettings(0.5, 10)
    body = rs.body(rs.ResponseCounts(20, 8), start=SENT, end=NOW, settings=cfg.response_settings)
    assert body["low_response"] is True and body["response_rate"]["threshold"] == 0.5


def test_invited_events_round_trip_through_the_full_decoder() -> None:
    record = encode(
        topic="s", event_type=ev.SURVEY_INVITED, source="/actions", event_id="x", key="k", data=invitation(1)
    )
    assert decode(headers=record.headers, key=record.key, value=record.value).data == invitation(1)
