"""Reconciling ``unknown`` deliveries as tables: the provider's answer in, the next step out; and the
SendGrid lookup against the fake SendGrid's Email Activity API (a real loopback server, no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.notifier.providers import Absent, CannotTell, Found, LookupProvider, LookupResult, Message
from services.notifier.providers.sendgrid import SendGridProvider
from services.notifier.reconcile import (
    Budget,
    GiveUp,
    LookAgain,
    Looked,
    MarkSent,
    ReconcileConfig,
    Requeue,
    Step,
    decide,
    result_label,
)
from shared.events import Channel
from tests.fakes.base import Step as FakeStep
from tests.fakes.sendgrid import FakeSendGrid
from tests.helpers import wait_for

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
CFG = ReconcileConfig(settle_s=600)
SETTLE = timedelta(seconds=600)
GONE = CannotTell("not_available", "Email Activity API not available (403)", lasting=True)
BUSY = CannotTell("rate_limited", "rate limit")


def looked(*, attempts: int = 1, absent_at: datetime | None = None) -> Looked:
    return Looked("survey-invite-1", attempts=attempts, absent_at=absent_at, now=NOW)


@pytest.mark.parametrize(
    ("facts", "answer", "expected", "label"),
    [
        # Found: it went out; sent, with SendGrid's message id, whatever was seen before.
        (looked(), Found("sg-1"), MarkSent("sg-1"), "found"),
        (looked(absent_at=NOW - SETTLE * 3), Found("sg-2"), MarkSent("sg-2"), "found"),
        (looked(attempts=5), Found(None), MarkSent(None), "found"),
        # First "absent": maybe not indexed yet; look again a settle delay later, remembering when.
        (looked(), Absent(), LookAgain(at=NOW + SETTLE, absent_at=NOW), "absent"),
        # A second "absent" too soon after the first: wait until the settle delay has passed.
        (
            looked(absent_at=NOW - timedelta(seconds=100)),
            Absent(),
            LookAgain(at=NOW + timedelta(seconds=500), absent_at=NOW - timedelta(seconds=100)),
            "absent",
        ),
        # Absent twice, a settle delay apart: sent again (attempts left) ...
        (looked(absent_at=NOW - SETTLE), Absent(), Requeue(at=NOW), "absent_confirmed"),
        (looked(attempts=4, absent_at=NOW - SETTLE * 2), Absent(), Requeue(at=NOW), "absent_confirmed"),
        # ... or failed when the last attempt was the last allowed (it provably never went out).
        (
            looked(attempts=5, absent_at=NOW - SETTLE),
            Absent(),
            GiveUp("the provider never received the last attempt (reconciled: absent twice)"),
            "absent_confirmed",
        ),
        # Cannot tell: stays unknown with the reason; soon again for a passing failure ...
        (looked(), BUSY, LookAgain(NOW + SETTLE, None, "not reconciled: rate limit"), "cannot_tell"),
        # ... much later when the feature is missing (no add-on), keeping a first "absent".
        (
            looked(absent_at=NOW - SETTLE),
            GONE,
            LookAgain(
                NOW + SETTLE * 6, NOW - SETTLE, "not reconciled: Email Activity API not available (403)"
            ),
            "cannot_tell",
        ),
    ],
)
def test_decide(facts: Looked, answer: LookupResult, expected: Step, label: str) -> None:
    step = decide(facts, answer, CFG, max_attempts=5)
    assert step == expected
    assert result_label(answer, step) == label


def test_never_resent_on_a_single_absent_answer_whatever_its_age() -> None:
    """The resend needs two "absent" answers a settle delay apart: one alone never requeues."""
    for attempts in (1, 3, 5):
        step = decide(looked(attempts=attempts), Absent(), CFG, max_attempts=5)
        assert isinstance(step, LookAgain) and step.absent_at == NOW


@pytest.mark.parametrize(
    ("per_minute", "takes", "expected"),
    [
        # (seconds since start, wanted) -> granted
        (6, [(0, 10), (0, 1), (10, 1), (10, 1), (60, 10)], [6, 0, 1, 0, 5]),
        (60, [(0, 100), (1, 1), (1, 1), (2, 0)], [60, 1, 0, 0]),
        (30, [(0, 40), (1, 1), (2, 1)], [30, 0, 1]),
    ],
)
def test_lookup_budget(per_minute: float, takes: list[tuple[float, int]], expected: list[int]) -> None:
    budget = Budget(per_minute, now=0.0)
    assert [budget.take(wanted, now=at) for at, wanted in takes] == expected


def test_unused_lookups_are_given_back() -> None:
    budget = Budget(6, now=0.0)
    assert budget.take(6, now=0.0) == 6
    budget.give_back(4)
    assert budget.take(6, now=0.0) == 4


# ---- the SendGrid adapter against the fake's Email Activity API ---------------------------------------
def _message(nid: str) -> Message:
    return Message(
        notification_id=nid, channel=Channel.EMAIL, to=f"{nid}@example.com", subject="Hi", body="b"
    )


def _provider(fake: FakeSendGrid, api_key: str | None = None) -> SendGridProvider:
    return SendGridProvider(
        api_key=api_key or fake.api_key,
        base_url=fake.url,
        from_email="feedback@example.com",
        from_name="Care",
        timeout_s=2,
    )


async def test_sendgrid_lookup_finds_what_sendgrid_received_and_only_that() -> None:
    with FakeSendGrid() as fake:
        provider = _provider(fake)
        try:
            assert isinstance(provider, LookupProvider)
            sent = await provider.send(_message("n-sent"))
            found = await provider.lookup("n-sent")
            assert isinstance(found, Found)
            assert found.provider_message_id == FakeSendGrid.msg_id(fake.accepted[0].at, fake.received[0])
            assert sent.provider_message_id  # the send's X-Message-Id
            assert await provider.lookup("n-never") == Absent()
            # A prefix or a neighbour does not match: the filter is on the exact notification id.
            assert await provider.lookup("n-sen") == Absent()
            # The query is the Email Activity language's custom-argument filter, with a limit.
            assert [lk.query for lk in fake.lookups] == [
                "unique_args['notification_id']=\"n-sent\"",
                "unique_args['notification_id']=\"n-never\"",
                "unique_args['notification_id']=\"n-sen\"",
            ]
            assert fake.calls == 1  # lookups are not sends
        finally:
            await provider.aclose()


async def test_sendgrid_lookup_respects_the_indexing_delay() -> None:
    with FakeSendGrid(indexing_delay_s=0.5) as fake:
        provider = _provider(fake)
        try:
            await provider.send(_message("n-late"))
            assert await provider.lookup("n-late") == Absent()  # not indexed yet

            async def look() -> LookupResult:
                return await provider.lookup("n-late")

            found = await wait_for(look, until=lambda r: isinstance(r, Found), timeout_s=10)
            assert isinstance(found, Found)
        finally:
            await provider.aclose()


async def test_sendgrid_lookup_accepted_even_when_the_answer_was_lost() -> None:
    """The case reconciliation exists for: SendGrid accepted, our read timed out."""
    with FakeSendGrid() as fake:
        fake.on("n-hang@example.com", FakeStep(status=0, delay_s=1.5))
        provider = SendGridProvider(
            api_key=fake.api_key, base_url=fake.url, from_email="f@example.com", from_name="C", timeout_s=0.3
        )
        try:
            result = await provider.send(_message("n-hang"))
            assert result.verdict.value == "ambiguous"
            assert isinstance(await provider.lookup("n-hang"), Found)
        finally:
            await provider.aclose()


@pytest.mark.parametrize(
    ("activity", "api_key", "reason", "lasting"),
    [
        (False, None, "not_available", True),  # no Email Activity add-on: 403
        (True, "SG.wrong", "not_available", True),  # a key without activity access: 401
    ],
)
async def test_sendgrid_lookup_cannot_tell_without_the_activity_api(
    activity: bool, api_key: str | None, reason: str, lasting: bool
) -> None:
    with FakeSendGrid(activity=activity) as fake:
        provider = _provider(fake, api_key)
        try:
            answer = await provider.lookup("n-1")
            assert isinstance(answer, CannotTell)
            assert (answer.reason, answer.lasting) == (reason, lasting)
            assert "add-on" in answer.detail
        finally:
            await provider.aclose()


async def test_sendgrid_lookup_cannot_tell_when_unreachable_or_the_id_cannot_be_quoted() -> None:
    with FakeSendGrid() as fake:
        provider = _provider(fake)
        try:
            quoted = await provider.lookup('n-"1"')
            assert isinstance(quoted, CannotTell) and quoted.reason == "unsafe_id"
            assert fake.lookups == []
        finally:
            await provider.aclose()
    gone = SendGridProvider(
        api_key="SG.k", base_url="http://127.0.0.1:9", from_email="f@example.com", from_name="C", timeout_s=1
    )
    try:
        answer = await gone.lookup("n-1")
        assert isinstance(answer, CannotTell) and not answer.lasting and answer.reason == "network_error"
    finally:
        await gone.aclose()


def test_the_fake_rejects_queries_sendgrid_would_reject() -> None:
    with FakeSendGrid() as fake:
        auth = {"Authorization": f"Bearer {fake.api_key}"}
        with httpx.Client(base_url=fake.url, headers=auth) as http:
            assert http.get("/v3/messages", params={"query": "x=1", "limit": 10}).status_code == 400
            assert http.get("/v3/messages", params={"query": "unique_args['a']=\"b\""}).status_code == 400
            ok = http.get("/v3/messages", params={"query": "unique_args['a']=\"b\"", "limit": 1})
            assert ok.status_code == 200 and ok.json() == {"messages": []}
