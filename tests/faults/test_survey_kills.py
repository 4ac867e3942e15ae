"""The notifier SIGKILLed 20 times while it sends survey invitations (issue 15).

Interactions stream into the collector (``order.delivered``, one customer each, with an email) for a
survey sent at once (delay 0, sampling 50 %): the set of invitations is known in advance
(``invitation_id`` of every acknowledged interaction ``in_sample``). Actions decides and asks the
notifier; the notifier is killed at random points while it sends, 20 times, and restarted. Then every
expected invitation is counted where it lands, by its dedupe key (``survey-invite-<invitation id>``):

- ``outbox``: the embedded provider, written in the claiming transaction: each expected invitation is
  in ``notifier.outbox`` exactly once and recorded ``sent``: none lost, none twice.
- ``sendgrid``: a fake SendGrid on a loopback port, a provider without an idempotency key, whose
  Email Activity API the notifier asks about every delivery left ``unknown`` (the kill fell between the
  committed claim and SendGrid's answer): found -> ``sent``, absent twice a settle delay apart -> sent
  again. Every expected invitation is received by SendGrid exactly once (counted by
  ``custom_args.notification_id`` on every accepted request), none is received that was not expected,
  and every one ends ``sent``: none lost, none twice, none left ``unknown``. The fake indexes a message
  for the activity API only 0.5 s after accepting it, and the notifier waits 2 s (``SETTLE_S``) before
  its first look and between the two "absent" answers (10 minutes by default, for SendGrid's own lag).

Each kill is taken while invitations are still owed (``kills_mid_send`` counts the kills that found
acknowledged invitations not yet at the provider).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.actions.surveys.decisions import in_sample, invitation_id
from tests.fakes.sendgrid import FakeSendGrid
from tests.faults.harness import CANARY_EMAIL_DOMAIN, fault_stack, report

pytestmark = pytest.mark.timeout(600)

ROUNDS = int(os.environ.get("CSAT_FAULT_KILL_ROUNDS", "20"))
SEED = int(os.environ.get("CSAT_FAULT_SEED", str(int(time.time()))))
SURVEY = "fault-invite"
SAMPLING = 50
PREFIX = "survey-invite-"
#: The reconciler's settle delay in the SendGrid variant (the fake's indexing delay is 0.5 s).
SETTLE_S = 2.0
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
    sampling: {SAMPLING}
    recontact_days: 30
    answer_window: 1d
    max_age: 3d
"""


class InteractionStream:
    """Posts batches of ``order.delivered`` interactions (one new customer each) until stopped."""

    BATCH = 10

    def __init__(self, collector_url: str, *, per_second: float) -> None:
        self.url = collector_url
        self.interval = self.BATCH / per_second
        self.run = uuid.uuid4().hex[:8]
        self.sent = 0
        self.acknowledged: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def item(self, n: int) -> dict[str, Any]:
        return {
            "interaction_id": f"{self.run}-order-{n}",
            "type": "order.delivered",
            "customer": {
                "id": f"cus-{self.run}-{n}",
                "email": f"buyer.{self.run}.{n}@{CANARY_EMAIL_DOMAIN}",
                "locale": "fr" if n % 2 else "en",
            },
            "segment": {"store": f"store-{n % 5}"},
            "attributes": {"order_id": str(n)},
        }

    async def _post(self, client: httpx.AsyncClient, items: list[dict[str, Any]]) -> None:
        """One batch, retried with the same ids until the collector acknowledges it (idempotent)."""
        self.sent += len(items)
        while True:
            with contextlib.suppress(httpx.HTTPError):
                r = await client.post("/v1/interactions/batch", json={"interactions": items})
                if r.status_code == 202:
                    self.acknowledged += [
                        res["interaction_id"] for res in r.json()["results"] if res["status"] == "accepted"
                    ]
                    return
            await asyncio.sleep(0.5)

    async def _run(self) -> None:
        n = 0
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                await self._post(client, [self.item(n + i) for i in range(self.BATCH)])
                n += self.BATCH
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 120)

    def expected(self) -> set[str]:
        """The notification ids the survey owes: every acknowledged interaction the sample takes."""
        return {
            PREFIX + invitation_id(SURVEY, iid)
            for iid in self.acknowledged
            if in_sample(SURVEY, iid, SAMPLING)
        }


async def _deliveries(database_url: str) -> dict[str, str]:
    """The notifier's record of every survey invitation: notification id -> status."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT notification_id, status FROM notifier.deliveries WHERE notification_id LIKE $1",
            PREFIX + "%",
        )
    finally:
        await conn.close()
    return {r["notification_id"]: r["status"] for r in rows}


async def _outbox(database_url: str) -> dict[str, int]:
    """Invitations in the embedded provider's table, by notification id (what a reader would get)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT notification_id, count(*) AS n FROM notifier.outbox WHERE notification_id LIKE $1 "
            "GROUP BY notification_id",
            PREFIX + "%",
        )
    finally:
        await conn.close()
    return {r["notification_id"]: int(r["n"]) for r in rows}


async def _reconciled(database_url: str) -> dict[str, int]:
    """What the reconciler found for the invitations it looked at: found (sent) or absent (sent again)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT reconciled, count(*) AS n FROM notifier.deliveries WHERE notification_id LIKE $1 "
            "AND reconciled IS NOT NULL GROUP BY reconciled",
            PREFIX + "%",
        )
    finally:
        await conn.close()
    return {r["reconciled"]: int(r["n"]) for r in rows}


def _sendgrid_counts(sendgrid: FakeSendGrid) -> dict[str, int]:
    """Every message SendGrid accepted, by the notification id it carries."""
    received: dict[str, int] = {}
    for body in list(sendgrid.received):
        nid = str(body.get("custom_args", {}).get("notification_id"))
        if nid.startswith(PREFIX):
            received[nid] = received.get(nid, 0) + 1
    return received


@pytest.mark.parametrize("provider", ["outbox", "sendgrid"])
async def test_notifier_killed_while_sending_invitations(fault_dir: Path, provider: str) -> None:
    rng = random.Random(SEED)  # fault timing; the seed is printed so a failure can be replayed
    root = fault_dir / "invites"
    root.mkdir(parents=True, exist_ok=True)
    (root / "surveys.yaml").write_text(SURVEYS_YAML, encoding="utf-8")
    env = {"CSAT_SURVEYS_FILE": str(root / "surveys.yaml"), "CSAT_TIMER_POLL_S": "0.5"}
    with FakeSendGrid(indexing_delay_s=0.5) as sendgrid:
        if provider == "sendgrid":
            env |= {
                "CSAT_EMAIL_PROVIDER": "sendgrid",
                "CSAT_SENDGRID_API_KEY": sendgrid.api_key,
                "CSAT_SENDGRID_BASE_URL": sendgrid.url,
                "CSAT_RECONCILE_SETTLE_S": str(SETTLE_S),
                "CSAT_RECONCILE_INTERVAL_S": "0.5",
                "CSAT_RECONCILE_LOOKUPS_PER_MINUTE": "6000",
            }
        async with fault_stack(root, services=("collector", "actions", "notifier"), extra_env=env) as fs:

            async def sink() -> dict[str, int]:
                if provider == "sendgrid":
                    return _sendgrid_counts(sendgrid)
                return await _outbox(fs.database_url)

            figures = await _rounds(fs, rng, sink, reconciled=provider == "sendgrid")
            figures["reconciled"] = await _reconciled(fs.database_url)
            figures["lookups"] = len(sendgrid.lookups)
    _check(provider, sendgrid_seen=provider == "sendgrid", **figures)


async def _rounds(
    fs: Any, rng: random.Random, sink: Callable[[], Any], *, reconciled: bool
) -> dict[str, Any]:
    notifier = fs.stack.services["notifier"]
    stream = InteractionStream(fs.url["collector"], per_second=20)
    stream.start()
    began = time.monotonic()
    kills = mid_send = 0
    # The first invitations must be on their way before the first kill.
    deadline = time.monotonic() + 120
    first = await sink()
    while not first and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        first = await sink()
    for _round in range(ROUNDS):
        await asyncio.sleep(rng.uniform(0.3, 2.5))
        owed = stream.expected() - set(await sink())
        await asyncio.to_thread(notifier.kill)
        kills += 1
        mid_send += bool(owed)
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        await asyncio.to_thread(notifier.start)
        if rng.random() < 0.5:  # half the time the next kill may land during start-up or a rebalance
            await asyncio.to_thread(notifier.wait_ready, 90)
    await asyncio.to_thread(notifier.wait_ready, 90)
    await stream.stop()
    chaos_s = time.monotonic() - began
    expected = stream.expected()

    # Wait until every expected invitation has a final record: sent, or (outbox: never) unknown after a
    # crash. With reconciliation an unknown one is not final: it is looked up, then sent or sent again.
    finals = ("sent",) if reconciled else ("sent", "unknown")
    deadline = time.monotonic() + 240
    deliveries = await _deliveries(fs.database_url)
    while time.monotonic() < deadline:
        final = {n for n in expected if deliveries.get(n) in finals}
        if len(final) == len(expected):
            break
        await asyncio.sleep(0.5)
        deliveries = await _deliveries(fs.database_url)
    await asyncio.sleep(2)  # anything still in flight (a duplicate would show now)
    return {
        "expected": expected,
        "deliveries": await _deliveries(fs.database_url),
        "received": await sink(),
        "kills": kills,
        "mid_send": mid_send,
        "seconds": chaos_s,
        "interactions_sent": stream.sent,
        "interactions_acknowledged": len(stream.acknowledged),
    }


def _check(
    provider: str,
    *,
    sendgrid_seen: bool,
    expected: set[str],
    deliveries: dict[str, str],
    received: dict[str, int],
    kills: int,
    mid_send: int,
    seconds: float,
    interactions_sent: int,
    interactions_acknowledged: int,
    reconciled: dict[str, int],
    lookups: int,
) -> None:
    status = {n: deliveries.get(n) for n in expected}
    sent = {n for n, s in status.items() if s == "sent"}
    unknown = {n for n, s in status.items() if s == "unknown"}
    unexpected = set(received) - expected
    missing_record = expected - sent - unknown
    duplicated = sum(c - 1 for c in received.values() if c > 1)
    not_received = expected - set(received)
    # Lost: owed, never at the provider, and not flagged either (an unknown one is reported, not silent).
    lost = len(not_received - unknown)
    report(
        f"notifier SIGKILL while sending invitations ({provider})",
        seed=SEED,
        rounds=ROUNDS,
        kills=kills,
        kills_mid_send=mid_send,
        seconds=round(seconds, 1),
        interactions=interactions_sent,
        acknowledged=interactions_acknowledged,
        invitations_expected=len(expected),
        received=sum(received.values()),
        lost=lost,
        duplicated=duplicated,
        unexpected=len(unexpected),
        recorded_sent=len(sent),
        unknown_after_crash=len(unknown),
        unknown_received=len(unknown & set(received)),
        unknown_not_received=len(unknown & not_received),
        without_final_record=len(missing_record),
        reconciled_found=reconciled.get("found", 0),
        reconciled_absent=reconciled.get("absent", 0),
        activity_lookups=lookups,
    )
    assert interactions_acknowledged == interactions_sent, "the collector refused interactions"
    assert kills == ROUNDS and mid_send >= ROUNDS // 2, "the kills did not land while invitations were owed"
    assert len(expected) > 100
    assert duplicated == 0, "an invitation reached the provider twice"
    assert not unexpected, "the provider received invitations nobody expected"
    assert not missing_record, f"{len(missing_record)} invitations have no final delivery record"
    assert sent <= set(received), "an invitation recorded sent never reached the provider"
    assert lost == 0, f"{lost} invitations never reached the provider and are not flagged unknown"
    # The embedded provider writes in the claiming transaction; SendGrid's unknown deliveries are
    # reconciled (found: sent; absent twice: sent again). Either way: exactly once, nothing unknown.
    assert not unknown, f"{len(unknown)} invitations left unknown"
    assert not not_received, f"{len(not_received)} invitations never reached the provider"
    assert set(received) == expected and all(c == 1 for c in received.values())
    if sendgrid_seen:
        assert sent == expected
    else:
        assert not reconciled, "the outbox has nothing to reconcile"
