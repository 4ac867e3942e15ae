"""The delivery's decisions as tables: facts in, the transition the dispatcher will apply out."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from services.notifier.policy import AddressKeys, QuietHours
from services.notifier.ports import DailySlot, SuppressionEntry
from services.notifier.providers import SendResult, Verdict, accepted
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from services.notifier.transitions import (
    Address,
    Admit,
    Answer,
    Defer,
    DispatchConfig,
    Due,
    Final,
    Reschedule,
    Send,
    address_of,
    admit,
    compose,
    counted_slot,
    over_daily_cap,
    record,
    recover,
)
from shared.events import Channel, OutcomeStatus
from shared.security.hashing import AddressHasher
from tests.unit.notifier_support import note, row_for

SLOT = DailySlot(date(2026, 6, 2), "cus-1", "sms:key")

PARIS = ZoneInfo("Europe/Paris")
#: 23:30 in Paris on 1 June is 21:30 UTC: the customer's day is still 1 June, and it is quiet-hours time.
LATE = datetime(2026, 6, 1, 23, 30, tzinfo=PARIS).astimezone(UTC)
NOON = datetime(2026, 6, 2, 12, 0, tzinfo=UTC)
CFG = DispatchConfig(daily_cap=3, quiet=QuietHours.parse("21:00-08:00"), max_attempts=3, retry_base_s=10)
TEMPLATES = Templates()
TOKENS = UnsubscribeTokens(["unit-secret"])
KEYS = CFG.address_keys
ANA = Address(
    "ana@example.com",
    "email",
    KEYS.key("email", "ana@example.com"),
    KEYS.candidates("email", "ana@example.com"),
)
ANA_SMS = Address(
    "+33612345678", "sms", KEYS.key("sms", "+33612345678"), KEYS.candidates("sms", "+33612345678")
)
ANA_SLOT = f"email:{ANA.key}"


def _due(
    *, now: datetime = NOON, suppressed: str | None = None, default: str | None = None, **kw: Any
) -> Due:
    counted_day = kw.pop("counted_day", None)
    attempts = kw.pop("attempts", 0)
    request = note("n-1", requested_at=now, **kw)
    row = row_for(request, counted_day=counted_day, attempts=attempts)
    return Due(row, request, "outbox", address_of(request, default, KEYS), suppressed, now)


# ---- admit: consent, quiet hours, the daily cap ---------------------------------------------------------
NO_ADDRESS = "no recipient address"
OPTED_OUT = "on the suppression list (customer:unsubscribed)"
PARIS_SMS = {"channel": Channel.SMS, "to": "+33 6 12 34 56 78", "timezone": "Europe/Paris", "now": LATE}
MORNING = datetime(2026, 6, 2, 8, 0, tzinfo=PARIS).astimezone(UTC)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        pytest.param({"to": None}, Final(OutcomeStatus.FAILED, "no_address", NO_ADDRESS, "outbox"),
                     id="no-address"),
        pytest.param({"suppressed": "customer:unsubscribed"},
                     Final(OutcomeStatus.SUPPRESSED, "opted_out", OPTED_OUT, "outbox"), id="opted-out"),
        pytest.param({"suppressed": "customer:unsubscribed", "transactional": True},
                     Admit(ANA, "outbox", None, None), id="internal-alerts-ignore-opt-out-and-cap"),
        pytest.param(PARIS_SMS, Defer(until=MORNING, provider="outbox"), id="sms-waits-for-the-morning"),
        pytest.param({**PARIS_SMS, "transactional": True}, Admit(ANA_SMS, "outbox", None, None),
                     id="internal-sms-ignores-quiet-hours"),
        pytest.param({"timezone": "Europe/Paris", "now": LATE},
                     Admit(ANA, "outbox", DailySlot(date(2026, 6, 1), "cus-1", ANA_SLOT), date(2026, 6, 1)),
                     id="email-at-night-counts-on-the-recipients-day"),
        pytest.param({"source": "shop-web"},
                     Admit(ANA, "outbox", DailySlot(NOON.date(), "cus-1", ANA_SLOT, "shop-web"), NOON.date()),
                     id="customer-address-and-source-counted-together"),
        pytest.param({"counted_day": date(2026, 5, 31)}, Admit(ANA, "outbox", None, date(2026, 5, 31)),
                     id="a-retry-is-not-counted-twice"),
        pytest.param({"customer": None},
                     Admit(ANA, "outbox", DailySlot(NOON.date(), None, ANA_SLOT), NOON.date()),
                     id="no-customer-still-capped-by-address"),
    ],
)  # fmt: skip
def test_admit(facts: dict[str, Any], expected: Final | Defer | Admit) -> None:
    assert admit(_due(**facts), CFG) == expected


def test_a_zero_cap_counts_nothing_and_no_quiet_hours_send_sms_at_night() -> None:
    due = _due(channel=Channel.SMS, to="+33612345678", timezone="Europe/Paris", now=LATE)
    step = admit(due, replace(CFG, daily_cap=0, address_cap=0, quiet=None))
    assert isinstance(step, Admit) and step.reserve is None and step.counted_day is None


@pytest.mark.parametrize(
    ("cap", "reason", "detail"),
    [
        ("customer", "daily_cap", "daily cap of 3 messages reached"),
        ("address", "address_cap", "daily cap of 2 messages to this address reached"),
        ("source", "source_cap", "daily cap of 50 messages for this source reached"),
    ],
)
def test_over_a_daily_cap_is_suppressed_naming_the_cap(cap: str, reason: str, detail: str) -> None:
    cfg = replace(CFG, address_cap=2, source_cap=50)
    assert over_daily_cap(_due(), cfg, cap=cap) == Final(OutcomeStatus.SUPPRESSED, reason, detail, "outbox")


@pytest.mark.parametrize(
    ("channel", "to", "default", "expected"),
    [
        (Channel.SMS, "+33 6-12-34-56-78", None, ANA_SMS),  # E.164, as providers want it
        (Channel.EMAIL, "Ana@Example.com", None,
         Address("Ana@Example.com", "email", ANA.key, ANA.candidates)),
        (Channel.SLACK, None, "https://hooks.example/x", Address("https://hooks.example/x", None, None)),
        (Channel.WEBHOOK, None, None, None),
    ],
)  # fmt: skip
def test_address_of(channel: Channel, to: str | None, default: str | None, expected: Address | None) -> None:
    assert address_of(note("n", channel=channel, to=to, requested_at=NOON), default, KEYS) == expected


def test_address_keys_are_keyed_and_still_match_the_legacy_unkeyed_hash() -> None:
    assert ANA.key is not None and len(ANA.key) == 64 and "ana" not in ANA.key
    other = AddressKeys(AddressHasher(["another-key-of-at-least-32-characters"]))
    assert other.key("email", "ana@example.com") != ANA.key  # without the key, no match
    legacy = hashlib.sha256(b"email:ana@example.com").hexdigest()
    assert ANA.candidates == (ANA.key, legacy)


# ---- compose: the unsubscribe link and the message ------------------------------------------------------
def _compose(due: Due, cfg: DispatchConfig = CFG) -> Final | Send:
    step = admit(due, cfg)
    assert isinstance(step, Admit)
    return compose(due, step, cfg, templates=TEMPLATES, tokens=TOKENS)


def test_a_customer_email_carries_one_click_unsubscribe_headers_and_the_link() -> None:
    cfg = replace(CFG, public_base_url="https://n.example/", unsubscribe_mailto="unsub@example.com")
    sent = _compose(_due(attempts=1), cfg)
    assert isinstance(sent, Send)
    assert sent.attempts == 2 and sent.counted_day == NOON.date()
    headers = sent.message.headers
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link, mailto = headers["List-Unsubscribe"].split(", ")
    token = link.removeprefix("<https://n.example/u/").removesuffix(">")
    assert mailto == f"<mailto:unsub@example.com?subject=unsubscribe%20{token}>"
    claim = TOKENS.read(token)
    assert (claim.scope, claim.address_key) == ("email", ANA.key)
    assert f"https://n.example/u/{token}" in sent.message.body
    assert sent.message.subject == "Thank you for your feedback!"


@pytest.mark.parametrize(
    "facts",
    [
        {"channel": Channel.SMS, "to": "+33612345678"},  # SMS templates say "Reply STOP" instead
        {"transactional": True, "template": "csm_alert"},
        {"channel": Channel.SLACK, "to": "https://hooks.example/x"},  # no address to opt out by
    ],
)
def test_only_customer_email_gets_unsubscribe_headers(facts: dict[str, Any]) -> None:
    sent = _compose(_due(**facts))
    assert isinstance(sent, Send) and dict(sent.message.headers) == {} and "/u/" not in sent.message.body


def test_a_missing_template_fails_and_gives_the_daily_slot_back() -> None:
    failed = _compose(_due(template="no_such_template"))
    assert isinstance(failed, Final)
    assert (failed.status, failed.reason) == (OutcomeStatus.FAILED, "template")
    assert failed.release == DailySlot(NOON.date(), "cus-1", ANA_SLOT)


# ---- record: a provider's answer ------------------------------------------------------------------------
def _answer(result: SendResult, *, dedupes: bool = False, attempts: int = 1, **kw: Any) -> Answer:
    base: dict[str, Any] = {"channel": Channel.SMS, "to": "+33612345678", "customer_id": "cus-1",
                            "slot": SLOT, "address_key": ANA_SMS.key}  # fmt: skip
    return Answer(result, "twilio", dedupes, "tok-1", attempts, **{**base, **kw})


R429 = SendResult(Verdict.RETRY, "rate_limited", retry_after_s=30.0, detail="429 slow down")
R503 = SendResult(Verdict.RETRY, "server_error", detail="503")
TIMEOUT = SendResult(Verdict.AMBIGUOUS, "timeout_after_send", detail="no answer after sending: ReadTimeout")
STOP = SendResult(
    Verdict.RECIPIENT_OPTED_OUT, "recipient_opted_out", detail="twilio 21610 recipient replied STOP"
)
R400 = SendResult(Verdict.REJECTED, "rejected", detail="400 invalid number")


@pytest.mark.parametrize(
    ("answer", "status", "reason", "release"),
    [
        pytest.param(_answer(accepted("SM1")), OutcomeStatus.SENT, None, None, id="accepted"),
        pytest.param(_answer(R429, attempts=3), OutcomeStatus.FAILED, "exhausted", SLOT, id="429-at-last"),
        pytest.param(_answer(TIMEOUT), OutcomeStatus.UNKNOWN, "ambiguous", None, id="timeout-not-resent"),
        pytest.param(_answer(TIMEOUT, dedupes=True, attempts=3), OutcomeStatus.FAILED, "exhausted", SLOT,
                     id="timeout-on-a-deduping-provider-is-a-retry"),
        pytest.param(_answer(STOP), OutcomeStatus.SUPPRESSED, "provider_opt_out", SLOT, id="replied-stop"),
        pytest.param(_answer(R400), OutcomeStatus.FAILED, "rejected", SLOT, id="rejected-not-retried"),
        pytest.param(_answer(R400, slot=None), OutcomeStatus.FAILED, "rejected", None, id="uncounted"),
    ],
)  # fmt: skip
def test_record_final_answers(
    answer: Answer, status: OutcomeStatus, reason: str | None, release: DailySlot | None
) -> None:
    step = record(answer, CFG, now=NOON)
    assert isinstance(step, Final)
    assert (step.status, step.reason, step.release) == (status, reason, release)
    assert (step.provider, step.token, step.attempts) == ("twilio", "tok-1", answer.attempts)
    assert (step.dead_letter is not None) is (reason == "exhausted")


def test_an_acceptance_also_upgrades_an_attempt_recorded_unknown() -> None:
    step = record(_answer(accepted("SM9")), CFG, now=NOON)
    assert isinstance(step, Final)
    assert step.from_statuses == ("sending", "unknown") and step.provider_message_id == "SM9"


def test_an_exhausted_delivery_says_why_in_its_dead_letter() -> None:
    step = record(_answer(R503, attempts=3), CFG, now=NOON)
    assert isinstance(step, Final)
    assert step.detail == step.dead_letter == "gave up after 3 attempts: 503"


@pytest.mark.parametrize(
    ("answer", "reason", "earliest", "latest"),
    [
        pytest.param(_answer(R503), "retry:server_error", 5, 10, id="5xx-backs-off-jittered"),
        pytest.param(_answer(R503, attempts=2), "retry:server_error", 10, 20, id="then-doubles"),
        pytest.param(_answer(R429), "retry:rate_limited", 30, 30, id="429-honours-retry-after"),
        pytest.param(_answer(TIMEOUT, dedupes=True), "retry:timeout_after_send", 5, 10, id="dedupes-resends"),
    ],
)
def test_record_retries(answer: Answer, reason: str, earliest: float, latest: float) -> None:
    step = record(answer, CFG, now=NOON, rng=random.Random(7))
    assert isinstance(step, Reschedule)
    assert step.reason == reason and step.token == "tok-1" and step.error == answer.result.detail
    assert timedelta(seconds=earliest) <= step.at - NOON <= timedelta(seconds=latest)


@pytest.mark.parametrize(
    ("channel", "to", "customer", "entries"),
    [
        (Channel.SMS, "+33612345678", "cus-1", (SuppressionEntry("sms", ANA_SMS.key or ""),
                                                 SuppressionEntry("customer", "cus-1"))),
        (Channel.EMAIL, "ana@example.com", "cus-1", (SuppressionEntry("email", ANA.key or ""),)),
        (Channel.SMS, "+33612345678", None, (SuppressionEntry("sms", ANA_SMS.key or ""),)),
    ],
)  # fmt: skip
def test_an_opt_out_reported_by_the_provider_suppresses_the_address(
    channel: Channel, to: str, customer: str | None, entries: tuple[SuppressionEntry, ...]
) -> None:
    key = ANA_SMS.key if channel is Channel.SMS else ANA.key
    step = record(_answer(STOP, channel=channel, to=to, customer_id=customer, address_key=key), CFG, now=NOON)
    assert isinstance(step, Final) and step.suppress is not None
    assert step.suppress.entries == entries
    assert (step.suppress.reason, step.suppress.source) == ("provider_opt_out", "twilio")


# ---- recover: a claimed attempt nobody recorded ---------------------------------------------------------
@pytest.mark.parametrize(
    ("dedupes", "attempts", "expected"),
    [
        pytest.param(True, 1, Reschedule(at=NOON, reason="recovered"), id="dedupes-resend"),
        pytest.param(False, 1, "unknown", id="may-have-gone-out-never-resent"),
        pytest.param(True, 3, "exhausted", id="dedupes-but-no-attempts-left"),
    ],
)
def test_recover(dedupes: bool, attempts: int, expected: Reschedule | str) -> None:
    request = note("n-1", channel=Channel.SMS, to="+33612345678", requested_at=NOON)
    row = row_for(request, provider="twilio", status="sending", attempts=attempts, claim_token="tok-9",
                  counted_day=date(2026, 6, 2))  # fmt: skip
    step = recover(row, dedupes=dedupes, cfg=CFG, now=NOON, release=counted_slot(row, CFG))
    if isinstance(expected, Reschedule):
        assert step == expected
        return
    assert isinstance(step, Final) and step.token == "tok-9" and step.provider == "twilio"
    if expected == "unknown":
        assert (step.status, step.reason, step.from_statuses) == (
            OutcomeStatus.UNKNOWN,
            "crashed_mid_send",
            ("sending",),
        )
        assert step.release is None  # it may have gone out: the slot stays counted
    else:
        assert (step.status, step.reason) == (OutcomeStatus.FAILED, "exhausted")
        assert step.release == DailySlot(date(2026, 6, 2), "cus-1", f"sms:{ANA_SMS.key}") and step.dead_letter
