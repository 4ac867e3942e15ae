"""Surveys end to end on the real broker and PostgreSQL, the five services as processes (issue 15):

1,000 ``order.delivered`` interactions for 800 customers (20 of them opted out) with a survey sent at once
(delay 0), sampling 50 %, throttle 30 days -> the invitations sent are exactly the deterministic
expectation; 300 of them answered through the emailed links (some twice with the same answer, some
re-clicked with a different score within the re-click window) -> the expected CSAT from the last answers
and a response rate of answered / invited, exactly; a different answer after the re-click window is
refused (409); the one reminder goes only to the unanswered; once the answer window has passed, the
links answer 410.

The reminder goes 75 seconds after the invitation and the re-click window is 30 seconds, so that the test
ends in under two minutes; nothing else is scaled down. The answer window is an hour, so that a
slow machine cannot close it in the middle of the answers: expiry is shown by a second survey (on
``chat.closed``, three other customers) whose one-minute window has long passed when the test looks. The
reminder is judged against the clock: an invitation answered clearly before its reminder was due (with a
margin for the pipeline's delay) must not get one; one never answered must get exactly one; one answered
around the due time (only on a loaded machine) may get it or not.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devstack.ports import free_port
from devstack.stack import SERVICES, Stack
from services.actions.surveys.decisions import in_sample, invitation_id
from shared.topics import Topics
from tests.helpers import TEST_KAFKA_PROCESS_ENV
from tests.infra import Infra, drop_database, new_database, new_topics

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SURVEY = "e2e-delivery"
ADMIN = {"Authorization": "Bearer dev-admin-key"}
REMINDER_S = 75
RECLICK_S = 30
EXPIRY_SURVEY = "e2e-expiry"
EXPIRY_WINDOW_S = 60  # the shortest answer window a survey accepts
#: An answer this long before its reminder was due must have stopped it (the rating still has to reach
#: actions through the broker: seconds on a loaded machine, milliseconds on a quiet one).
PIPELINE_MARGIN_S = 15
SURVEYS_YAML = f"""
version: 1
surveys:
  - id: {SURVEY}
    on: [order.delivered]
    metric: csat
    scale: 1-5
    question:
      en: How satisfied are you with your delivery?
      fr: Êtes-vous satisfait de votre livraison ?
    channels: [email]
    delay: 0s
    sampling: 50
    recontact_days: 30
    answer_window: 1h
    reminder: {{after: {REMINDER_S}s}}
    max_age: 3d
    reclick_window: {RECLICK_S}s
  - id: {EXPIRY_SURVEY}
    on: [chat.closed]
    metric: csat
    scale: 1-5
    question:
      en: How was your chat?
      fr: Comment s'est passée votre discussion ?
    channels: [email]
    delay: 0s
    sampling: 100
    recontact_days: 30
    answer_window: {EXPIRY_WINDOW_S}s
    max_age: 3d
"""
LINK = re.compile(r"(https?://\S+/v1/email/([A-Za-z0-9._-]+))\?score=(\d)")
CAMPAIGN = f"surveys-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    name = new_database(infra)
    topics = new_topics(infra, partitions=3)
    var = Path(tmp_path_factory.mktemp("surveys"))
    (var / "surveys.yaml").write_text(SURVEYS_YAML, encoding="utf-8")
    s = Stack(
        var_dir=var,
        kafka_bootstrap=infra.bootstrap,
        database_url=infra.db_url(name),
        topic_prefix=topics.prefix,
        ports={svc: free_port() for svc in SERVICES},
        extra_env={
            **TEST_KAFKA_PROCESS_ENV,
            "CSAT_LOG_FORMAT": "json",
            "CSAT_SURVEYS_FILE": str(var / "surveys.yaml"),
            "CSAT_TIMER_POLL_S": "0.5",
        },
    )
    s.start_infrastructure()
    try:
        s.start_services()
        yield s
    finally:
        s.stop()
        drop_database(infra, name)


def poll(fn: Any, until: Any, timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    value = fn()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s}s; last: {value!r}")
        time.sleep(0.5)
        value = fn()
    return value


def scorer_caught_up(stack: Stack, timeout_s: float = 60.0) -> None:
    """Wait until the scorer has stored offsets at the ratings topic's end as it is now: every rating
    published so far is counted (the scorer commits its offsets with its counts). Reaching the expected
    number of responses is not enough: a re-click's corrected answer can sit in the scorer's next batch
    after its first answer made the count complete."""
    assert stack.kafka_bootstrap is not None and stack.database_url is not None
    topic = Topics(stack.topic_prefix).ratings

    async def ends() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
        await consumer.start()
        try:
            await consumer.topics()
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            return {tp.partition: off for tp, off in (await consumer.end_offsets(parts)).items()}
        finally:
            await consumer.stop()

    async def stored() -> dict[int, int]:
        conn = await asyncpg.connect(stack.database_url)
        try:
            rows = await conn.fetch(
                "SELECT partition, next_offset FROM ops.consumer_offsets"
                " WHERE consumer_group = 'csat-scorer' AND topic = $1",
                topic,
            )
        finally:
            await conn.close()
        return {int(r["partition"]): int(r["next_offset"]) for r in rows}

    target = asyncio.run(ends())
    assert target and sum(target.values()) > 0
    poll(
        lambda: asyncio.run(stored()),
        until=lambda got: all(got.get(p, 0) >= end for p, end in target.items()),
        timeout_s=timeout_s,
    )


def outbox(stack: Stack, prefix: str) -> dict[str, str]:
    """Survey messages written by the outbox provider, by invitation id."""
    folder = stack.var_dir / "outbox"
    if not folder.exists():
        return {}
    return {
        p.name.removeprefix(prefix).removesuffix(".txt"): p.read_text(encoding="utf-8")
        for p in folder.glob(f"{prefix}*.txt")
    }


def links(body: str) -> dict[int, str]:
    return {int(m.group(3)): m.group(1) for m in LINK.finditer(body)}


def test_surveys_from_interactions_to_response_rate(stack: Stack) -> None:
    collector = stack.services["collector"].url
    actions = stack.services["actions"].url
    scorer = stack.services["scorer"].url
    customers = [f"{CAMPAIGN}-c{n}" for n in range(800)]
    opted_out = set(customers[::40])  # 20 customers
    for cid in sorted(opted_out):
        r = httpx.put(f"{actions}/v1/customers/{cid}", json={"opted_out": True}, headers=ADMIN, timeout=30)
        assert r.status_code in (200, 201), r.text

    interactions: list[dict[str, Any]] = [
        {
            "interaction_id": f"{CAMPAIGN}-order-{n}",
            "type": "order.delivered",
            "customer": {
                "id": customers[n % 800],
                "email": f"c{n % 800}@example.com",
                "locale": "fr" if n % 2 else "en",
            },
            "segment": {"campaign": CAMPAIGN},
            "attributes": {"order_id": str(n)},
        }
        for n in range(1000)
    ]
    chats: list[dict[str, Any]] = [
        {
            "interaction_id": f"{CAMPAIGN}-chat-{n}",
            "type": "chat.closed",
            "customer": {"id": f"{CAMPAIGN}-chatter-{n}", "email": f"chatter{n}@example.com", "locale": "en"},
            "segment": {"campaign": f"{CAMPAIGN}-chat"},
        }
        for n in range(3)
    ]
    r = httpx.post(f"{collector}/v1/interactions/batch", json={"interactions": chats}, timeout=60)
    assert r.status_code == 202 and r.json()["accepted"] == 3, r.text
    chat_invitations = {invitation_id(EXPIRY_SURVEY, str(c["interaction_id"])) for c in chats}
    for start in range(0, 1000, 500):
        r = httpx.post(
            f"{collector}/v1/interactions/batch",
            json={"interactions": interactions[start : start + 500]},
            timeout=60,
        )
        assert r.status_code == 202 and r.json()["accepted"] == 500, r.text

    # The expectation: a customer's first sampled interaction, unless they opted out; later ones throttled.
    expected: dict[str, str] = {}
    for item in interactions:
        cid = item["customer"]["id"]
        if cid in opted_out or cid in expected:
            continue
        if in_sample(SURVEY, item["interaction_id"], 50):
            expected[cid] = invitation_id(SURVEY, item["interaction_id"])
    invited = set(expected.values())

    sent = poll(
        lambda: outbox(stack, "survey-invite-"),
        until=lambda got: len(got) >= len(invited) + len(chat_invitations),
    )
    assert set(sent) == invited | chat_invitations
    assert 300 < len(invited) < 600  # sanity of the sample: about 0.5 + 0.25 of the repeat customers

    # 300 answers through the links: 90 x 5, 120 x 4, 30 x 3, 60 x 2 -> CSAT 210 / 300 = 70 %. Every
    # seventh person first clicks the wrong end of the scale, then their real score within the re-click
    # window: the last answer counts (counted first, the CSAT would be far from 70 %).
    scores = [5] * 90 + [4] * 120 + [3] * 30 + [2] * 60
    answered = sorted(invited)[:300]
    reclicked = [n for n in range(300) if n % 7 == 3]
    first_answered: dict[int, float] = {}
    answered_at: dict[
        str, float
    ] = {}  # wall clock when the last answer was recorded (202 from the collector)

    def answer(n: int) -> None:
        iid, score = answered[n], scores[n]
        url = links(sent[iid])[score]
        comment = "Fast" if n % 3 == 0 else ""
        with httpx.Client(timeout=30) as http:
            page = http.get(f"{url}?score={score}")  # what a mail scanner does too: records nothing
            assert page.status_code == 200 and "<form" in page.text
            if n in reclicked:
                wrong = 1 if score >= 3 else 5
                slip = http.post(url, data={"score": str(wrong), "comment": comment})
                assert slip.status_code == 200, slip.text
                first_answered[n] = time.monotonic()
            done = http.post(url, data={"score": str(score), "comment": comment})
            assert done.status_code == 200, done.text
            first_answered.setdefault(n, time.monotonic())
            answered_at[iid] = time.time()
            if n % 10 == 0:  # clicked twice: the same answer is recorded once
                again = http.post(url, data={"score": str(score), "comment": comment})
                assert again.status_code == 200, again.text

    def invited_at(iid: str) -> float:
        return (stack.var_dir / "outbox" / f"survey-invite-{iid}.txt").stat().st_mtime

    with ThreadPoolExecutor(max_workers=8) as pool:  # the earliest invited first, as people would
        list(pool.map(answer, sorted(range(300), key=lambda n: invited_at(answered[n]))))

    def csat() -> Any:
        return httpx.get(
            f"{scorer}/v1/scores",
            params={"metric": "csat", "window": "30d", "segment": f"campaign:{CAMPAIGN}"},
            headers=ADMIN,  # scores:read, like every data route since trust-routes
            timeout=30,
        ).json()

    scorer_caught_up(stack)  # every answer, re-clicks included, is in the broker once the POSTs are done
    body = csat()
    assert body["responses"] == 300 and body["score"] == 70.0 and body["positive"] == 210, body

    def stats() -> Any:
        return httpx.get(f"{actions}/v1/surveys/{SURVEY}/stats", headers=ADMIN, timeout=30).json()

    figures = poll(stats, until=lambda s: s["answered"] == 300 and s["sent"] == len(invited))
    assert figures["invited"] == len(invited)
    assert figures["answered_per_invited"] == 300 / len(invited)
    assert figures["response_rate"]["value"] == 300 / len(invited)
    assert figures["answered_with_comment"] == 100

    # The one reminder: to every invitation not answered, to none answered before it was due, once (one id
    # per invitation's reminder: a second would be deduplicated, so the outbox holds one file per id).
    unanswered = invited - set(answered)
    reminded = poll(
        lambda: outbox(stack, "survey-reminder-"),
        until=lambda got: unanswered <= set(got),
        timeout_s=180,
    )
    folder = stack.var_dir / "outbox"
    due = {iid: invited_at(iid) + REMINDER_S for iid in invited}
    clearly_before = {iid for iid, at in answered_at.items() if at < due[iid] - PIPELINE_MARGIN_S}
    assert not set(reminded) & clearly_before
    assert set(reminded) <= invited  # never to the other survey's invitations: it has no reminder
    assert len(clearly_before) >= 100, "the machine was too slow to judge the reminder at all"
    assert all("Êtes-vous" in body or "How satisfied" in body for body in reminded.values())

    # After the re-click window (from the first answer) a different answer is refused; the last stands.
    n = reclicked[0]
    time.sleep(max(0.0, first_answered[n] + RECLICK_S + 1 - time.monotonic()))  # a deadline, not a result
    url = links(sent[answered[n]])[scores[n]]
    refused = httpx.post(url, data={"score": "1"}, headers={"Accept": "application/json"}, timeout=30)
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"] == "https://csat.dev/problems/already-answered"
    assert (
        httpx.post(url, data={"score": str(scores[n]), "comment": "Fast" if n % 3 == 0 else ""}).status_code
        == 200
    )
    assert csat()["score"] == 70.0

    # Past the answer window, the links are gone (the token carries its expiry: no clock is mocked).
    last = sorted(chat_invitations)[0]
    sent_at = (folder / f"survey-invite-{last}.txt").stat().st_mtime
    time.sleep(max(0.0, sent_at + EXPIRY_WINDOW_S + 1 - time.time()))  # a deadline, not a result
    expired = links(sent[last])[4]
    gone = httpx.get(f"{expired}?score=4", headers={"Accept": "application/json"}, timeout=30)
    assert gone.status_code == 410
    late = httpx.post(expired, data={"score": "4"}, headers={"Accept": "application/json"}, timeout=30)
    assert late.status_code == 410
    assert csat()["responses"] == 300

    # The scorer's response rate for the segment (csat.surveys.invited.v1 and the answers): answered /
    # invited, exactly, with its interval; 300 of 400-odd is far above the low-response threshold.
    scored = poll(csat, until=lambda b: (b.get("response_rate") or {}).get("invited") == len(invited))
    rate = scored["response_rate"]
    assert (rate["answered"], rate["rate"]) == (300, 300 / len(invited))
    assert rate["ci_low"] < rate["rate"] < rate["ci_high"] and scored["low_response"] is False
