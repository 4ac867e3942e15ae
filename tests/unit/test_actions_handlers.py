"""The actions use cases on in-memory stores: what a consumed batch decides, stores and publishes, and
what a scheduler tick fires. The same paths on PostgreSQL: tests/integration/test_actions.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.actions.engine import Policy
from services.actions.facts import HistoryWindow
from services.actions.handlers import ActionsHandler, TimerHandler
from services.actions.routes.customers import CustomerProfileIn
from services.actions.rulebook import RuleBook
from services.actions.rules import parse_document, parse_rules
from services.actions.settings import DEFAULT_RULES
from services.actions.verbatims import load_taxonomy_file
from services.collector.domain import RatingIn, normalize
from shared import events as ev
from shared.consumer import Received
from shared.envelope import Envelope, OutgoingRecord, decode
from shared.scales import Metric
from shared.topics import Topics
from shared.verbatims import DEFAULT_THEMES
from tests.fakes.actions_store import MemoryActions

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
TOPICS = Topics(prefix="unit.")
TAXONOMY = load_taxonomy_file(DEFAULT_THEMES)
POLICY = Policy(
    default_csm_email="csm@example.com",
    csm_managers={"owner@example.com": "manager@example.com"},
    daily_cap=3,
    theme_owners={t: o for t in TAXONOMY.theme_ids if (o := TAXONOMY.owner(t))},
    theme_default_owner=TAXONOMY.default_owner,
    segment_owners={"store=paris-1": "paris1@example.com"},
)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def rulebook(text: str | None = None) -> RuleBook:
    source = text if text is not None else Path(DEFAULT_RULES).read_text(encoding="utf-8")
    document = parse_document(source)
    return RuleBook(file_document=document, file_rules=parse_rules(document), file_origin="test")


def handler(clock: Clock, rules: str | None = None, policy: Policy = POLICY) -> ActionsHandler:
    return ActionsHandler(
        rulebook=rulebook(rules),
        taxonomy=TAXONOMY,
        policy=policy,
        topics=TOPICS,
        history=HistoryWindow(),
        clock=clock,
    )


def rating(
    rid: str,
    score: int,
    *,
    customer: str = "cus-1",
    comment: str | None = None,
    tier: str = "smb",
    at: datetime = NOW,
) -> ev.RatingSubmitted:
    body = {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": customer, "email": f"{customer}@example.com"},
        "segment": {"store": "paris-1"},
        "account": {"tier": tier},
        "consent": {"contact": True},
        "occurred_at": at.isoformat(),
        **({"comment": comment} if comment else {}),
    }
    return normalize(RatingIn.model_validate(body), received_at=at)


def segment_alert(alert_id: str, store: str) -> ev.SegmentAlert:
    return ev.SegmentAlert(
        alert_id=alert_id,
        metric=Metric.CSAT,
        window="7d",
        segment=f"store={store}",
        segment_attributes={"store": store},
        reason="dropped",
        score=58.0,
        previous=81.0,
        responses=140,
        computed_at=NOW,
    )


def batch(*events: ev.RatingSubmitted | ev.SegmentAlert) -> list[Received]:
    kinds = {ev.RatingSubmitted: ev.RATING_SUBMITTED, ev.SegmentAlert: ev.SEGMENT_ALERT}
    return [
        Received(
            envelope=Envelope(
                id=f"e-{i}",
                type=kinds[type(e)],
                source="/test",
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


async def consume(
    db: MemoryActions, use_case: ActionsHandler, *events: ev.RatingSubmitted | ev.SegmentAlert
) -> list[OutgoingRecord]:
    async with db.begin() as stores:
        return await use_case(stores, batch(*events))


async def set_customer(db: MemoryActions, customer_id: str, profile: CustomerProfileIn) -> None:
    async with db.begin() as stores:
        await stores.customers.upsert(customer_id=customer_id, fields=profile.model_dump(mode="json"))


def published(records: Sequence[OutgoingRecord]) -> list[Envelope]:
    return [decode(headers=r.headers, key=r.key, value=r.value) for r in records]


def notes(records: Sequence[OutgoingRecord]) -> list[ev.NotificationRequested]:
    return [e.data for e in published(records) if isinstance(e.data, ev.NotificationRequested)]


def outcomes(db: MemoryActions, rating_id: str) -> dict[str, str]:
    return {d.rule_id: d.outcome for d in db.tables.decisions.values() if d.rating_id == rating_id}


async def test_a_low_score_alerts_the_owning_csm_and_the_customer_hears_back() -> None:
    db, clock = MemoryActions(), Clock()
    await set_customer(db, "cus-1", CustomerProfileIn(owner_email="owner@example.com", tier="strategic"))
    records = await consume(db, handler(clock), rating("r1", 1))

    assert outcomes(db, "r1") == {
        "strategic-account-alert": "notified",
        "low-score-customer-email": "notified",
        "low-score-resurvey": "scheduled",
    }
    by_template = {n.template: n for n in notes(records)}
    assert set(by_template) == {"csm_alert", "low_score_followup"}
    alert_note = by_template["csm_alert"]
    assert alert_note.recipient.email == "owner@example.com" and alert_note.priority == "high"
    assert by_template["low_score_followup"].recipient.email == "cus-1@example.com"
    assert all(r.key == b"cus-1" for r in records)
    decided = [e.data for e in published(records) if isinstance(e.data, ev.ActionDecided)]
    assert sorted(d.rule_id for d in decided) == sorted(outcomes(db, "r1"))

    (alert,) = db.tables.alerts.values()
    assert alert.draft.alert_id == alert_note.notification_id and alert.status == "open"
    assert alert.draft.due_at == NOW + timedelta(hours=24)
    assert sorted((t.kind, t.due_at - NOW) for t in db.tables.timers.values()) == [
        ("send", timedelta(hours=2)),
        ("sla_escalation", timedelta(hours=24)),
    ]
    row = next(d for d in db.tables.decisions.values() if d.rule_id == "strategic-account-alert")
    assert row.ref == alert.draft.alert_id and row.channel == "email" and not row.customer_facing


async def test_cooldowns_carry_from_one_rating_to_the_next_in_a_batch_and_across_batches() -> None:
    db, clock = MemoryActions(), Clock()
    use_case = handler(clock)
    first, second = rating("r1", 1), rating("r2", 2, at=NOW + timedelta(minutes=1))
    await consume(db, use_case, second, first)  # decided in the order they happened

    assert outcomes(db, "r1") == {
        "low-score-csm-alert": "notified",
        "low-score-customer-email": "notified",
        "low-score-resurvey": "scheduled",
        "low-value-education": "scheduled",
    }
    assert outcomes(db, "r2") == {
        "low-score-csm-alert": "notified",  # staff alerts have no cooldown
        "low-score-customer-email": "skipped_cooldown",
        "low-score-resurvey": "skipped_cooldown",
        "low-value-education": "skipped_cooldown",
    }
    clock.now = NOW + timedelta(days=1)
    await consume(db, use_case, rating("r3", 1, at=clock.now))
    assert outcomes(db, "r3")["low-score-customer-email"] == "skipped_cooldown"
    clock.now = NOW + timedelta(days=8)  # the apology's cooldown is 7 days, the re-survey's 14
    await consume(db, use_case, rating("r4", 1, at=clock.now))
    assert outcomes(db, "r4")["low-score-customer-email"] == "notified"
    assert outcomes(db, "r4")["low-score-resurvey"] == "skipped_cooldown"


CAP_RULES = """
rules:
  - id: sorry
    when: {sentiment: negative}
    actions: [{type: customer_email, template: low_score_followup}]
  - id: thanks-anyway
    when: {sentiment: negative}
    actions: [{type: customer_email, template: thank_you}]
"""


async def test_the_daily_cap_counts_what_earlier_ratings_of_the_batch_sent() -> None:
    db, clock = MemoryActions(), Clock()
    use_case = handler(clock, CAP_RULES, Policy(daily_cap=3))
    records = await consume(db, use_case, rating("r1", 1), rating("r2", 1, at=NOW + timedelta(minutes=1)))
    assert outcomes(db, "r1") == {"sorry": "notified", "thanks-anyway": "notified"}
    assert outcomes(db, "r2") == {"sorry": "notified", "thanks-anyway": "skipped_daily_cap"}
    assert len(notes(records)) == 3
    clock.now = NOW + timedelta(hours=1)
    await consume(db, use_case, rating("r3", 1, at=clock.now))
    assert outcomes(db, "r3") == {"sorry": "skipped_daily_cap", "thanks-anyway": "skipped_daily_cap"}
    clock.now = NOW + timedelta(hours=25)
    await consume(db, use_case, rating("r4", 1, at=clock.now))
    assert outcomes(db, "r4") == {"sorry": "notified", "thanks-anyway": "notified"}


async def test_an_opted_out_customer_gets_no_message_but_the_csm_still_hears() -> None:
    db, clock = MemoryActions(), Clock()
    await set_customer(db, "cus-1", CustomerProfileIn(opted_out=True))
    records = await consume(db, handler(clock), rating("r1", 1, comment="Livraison en retard, très déçu"))

    assert outcomes(db, "r1") == {
        "low-score-csm-alert": "notified",
        "low-score-customer-email": "skipped_opted_out",
        "low-value-education": "skipped_opted_out",
        "critical-comment-theme-alert": "notified",
    }
    assert sorted(n.template for n in notes(records)) == ["csm_alert", "theme_alert"]
    assert db.tables.enrolments == {} and db.tables.timers == {}
    assert db.tables.ratings["r1"].themes == ["delivery_time"]


async def test_a_segment_alert_reaches_the_segment_owner_once() -> None:
    db, clock = MemoryActions(), Clock()
    use_case = handler(clock)
    records = await consume(db, use_case, segment_alert("sa-1", "paris-1"), segment_alert("sa-2", "lyon-2"))
    (note,) = notes(records)
    assert note.template == "segment_alert" and note.recipient.email == "paris1@example.com"
    assert records[0].key == b"store=paris-1"
    rows = {d.decision_id: (d.outcome, d.ref) for d in db.tables.decisions.values()}
    assert rows == {
        "segment-owner-alert/sa-1/0": ("notified", "store=paris-1"),
        "segment-owner-alert/sa-2/0": ("skipped_no_recipient", "store=lyon-2"),  # nobody owns lyon-2
    }
    assert await consume(db, use_case, segment_alert("sa-1", "paris-1")) == []  # published again


async def test_replaying_a_batch_decides_and_publishes_nothing_twice() -> None:
    db, clock = MemoryActions(), Clock()
    use_case = handler(clock)
    events = (rating("r1", 1, tier="strategic"), rating("r2", 5, customer="cus-2"))
    first = await consume(db, use_case, *events)
    stored = (dict(db.tables.decisions), dict(db.tables.alerts), dict(db.tables.timers))
    clock.now = NOW + timedelta(minutes=5)
    assert await consume(db, use_case, *events) == []
    assert (dict(db.tables.decisions), dict(db.tables.alerts), dict(db.tables.timers)) == stored
    assert Counter(n.template for n in notes(first)) == {
        "csm_alert": 1,
        "low_score_followup": 1,
        "thank_you": 1,
    }


SLA_RULES = """
rules:
  - id: vip-alert
    actions:
      - {type: csm_alert, priority: high, sla: 1h, escalate: true}
"""


async def test_a_tick_escalates_the_open_alert_and_not_the_acknowledged_one() -> None:
    db, clock = MemoryActions(), Clock()
    for cid in ("cus-late", "cus-quick"):
        await set_customer(db, cid, CustomerProfileIn(owner_email="owner@example.com"))
    await consume(db, handler(clock, SLA_RULES), rating("late", 1, customer="cus-late"))
    await consume(db, handler(clock, SLA_RULES), rating("quick", 1, customer="cus-quick"))
    alerts = {a.draft.customer_id: a.draft.alert_id for a in db.tables.alerts.values()}
    async with db.begin() as stores:
        acked = await stores.alerts.transition(
            alert_id=alerts["cus-quick"], to="acknowledged", by="Ana", note=None, now=NOW
        )
    assert acked.error is None and acked.alert is not None and acked.alert["status"] == "acknowledged"

    fire = TimerHandler(topics=TOPICS, policy=POLICY)
    async with db.begin() as stores:
        assert (await fire(stores, now=NOW + timedelta(minutes=59), limit=10)).firings == []
        tick = await fire(stores, now=NOW + timedelta(hours=1), limit=10)

    (escalation,) = notes(tick.records)
    assert escalation.template == "sla_escalation" and escalation.recipient.email == "manager@example.com"
    assert escalation.context["alert"]["id"] == alerts["cus-late"]
    assert [(f.timer.ref, f.fired.outcome) for f in tick.firings] == [(alerts["cus-late"], "escalated")]
    assert db.tables.alerts[alerts["cus-late"]].escalated_at == NOW + timedelta(hours=1)
    assert {t.ref: (t.status, t.outcome) for t in db.tables.timers.values()} == {
        alerts["cus-late"]: ("fired", "escalated"),
        alerts["cus-quick"]: ("cancelled", "acknowledged"),
    }
    (row,) = [d for d in db.tables.decisions.values() if d.decision_id.startswith("timer/")]
    assert (row.outcome, row.customer_id, row.notification_id) == (
        "notified",
        "cus-late",
        escalation.notification_id,
    )
    async with db.begin() as stores:
        assert (await fire(stores, now=NOW + timedelta(hours=2), limit=10)).firings == []


# ---- claims: a publishable key's ratings ------------------------------------------------------------
def claimed(
    rid: str, score: int, *, customer: str = "cus-1", proven: bool = False, **extra: object
) -> ev.RatingSubmitted:
    """A rating posted from a page: every claim an attacker could make, the customer id proven or not."""
    body = {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": customer, "email": "outsider@evil.example", "phone": "+33699999999"},
        "account": {"tier": "strategic", "value": 900000},
        "consent": {"contact": True, "review": True},
        **extra,
    }
    identity = ev.Identity.VERIFIED if proven else ev.Identity.CLAIMED
    provenance = ev.Provenance(key_kind=ev.KeyKind.PUBLISHABLE, identity=identity)
    return normalize(RatingIn.model_validate(body), received_at=NOW, provenance=provenance)


async def test_claims_reach_nobody_and_raise_no_priority_whatever_the_score() -> None:
    db, clock = MemoryActions(), Clock()
    await set_customer(
        db, "cus-1", CustomerProfileIn(owner_email="owner@example.com", email="ana@example.com")
    )
    records = await consume(
        db,
        handler(clock),
        *(
            claimed(f"c{i}", 1 + i % 5, comment="The delivery was very late, terrible service")
            for i in range(10)
        ),
    )
    sent = notes(records)
    assert sent and all(n.transactional and n.template == "theme_alert" for n in sent)  # the theme's team
    assert not any("evil" in str(n.recipient) or "ana@" in str(n.recipient) for n in sent)
    assert not db.tables.alerts and not db.tables.enrolments
    assert not db.tables.timers
    skipped = Counter(d.outcome for d in db.tables.decisions.values())
    assert skipped["notified"] == len(sent) and "skipped_unverified_customer" in skipped


async def test_claimed_ratings_stay_out_of_the_real_customers_history_and_surveys() -> None:
    db, clock = MemoryActions(), Clock()
    await set_customer(
        db, "cus-1", CustomerProfileIn(owner_email="owner@example.com", email="ana@example.com")
    )
    # Three low scores typed into a widget under cus-1's id: not the customer's, so no churn alert later.
    await consume(db, handler(clock), *(claimed(f"fake-{i}", 1, comment=f"x{i}") for i in range(3)))
    clock.now = NOW + timedelta(minutes=5)
    records = await consume(db, handler(clock), rating("real", 1, at=NOW + timedelta(minutes=5)))
    assert "churn-risk-alert" not in outcomes(db, "real")
    assert outcomes(db, "real")["low-score-csm-alert"] == "notified"
    (email,) = [n for n in notes(records) if n.template == "low_score_followup"]
    assert email.recipient.email == "ana@example.com"  # the CRM's address, never a claim


async def test_a_proven_customer_gets_the_playbook_with_the_crm_address_only() -> None:
    db, clock = MemoryActions(), Clock()
    crm = CustomerProfileIn(
        email="ana@example.com", owner_email="owner@example.com", consent={"contact": True}, tier="smb"
    )
    await set_customer(db, "cus-1", crm)
    records = await consume(db, handler(clock), claimed("proven", 1, proven=True))
    assert outcomes(db, "proven") == {
        "low-score-csm-alert": "notified",  # normal priority: the claimed "strategic" tier is not a fact
        "low-score-customer-email": "notified",
        "low-score-resurvey": "scheduled",
        "low-value-education": "scheduled",
    }
    recipients = {n.template: (n.recipient.email, n.priority) for n in notes(records)}
    assert recipients == {
        "csm_alert": ("owner@example.com", "normal"),
        "low_score_followup": ("ana@example.com", "normal"),
    }


def reclicked(rid: str, score: int, revision: int, **kw: object) -> ev.RatingSubmitted:
    """A survey re-click: the same rating id, a new answer, the next revision."""
    return rating(rid, score, **kw).model_copy(update={"revision": revision})  # type: ignore[arg-type]


async def test_a_reclick_is_a_new_fact_once_and_each_rule_decides_once_per_rating() -> None:
    db, clock = MemoryActions(), Clock()
    use_case = handler(clock)
    first = await consume(db, use_case, rating("r1", 5))
    assert [n.template for n in notes(first)] == ["thank_you"]
    before = set(outcomes(db, "r1"))
    # 5 corrected to 1 within the window: the low-score rules had not decided on r1, so they act now.
    clock.now = NOW + timedelta(minutes=2)
    changed = await consume(db, use_case, reclicked("r1", 1, 1))
    assert Counter(n.template for n in notes(changed)) == {"low_score_followup": 1, "csm_alert": 1}
    assert set(outcomes(db, "r1")) - before == {
        "low-score-customer-email",
        "low-score-resurvey",
        "low-score-csm-alert",
        "low-value-education",
    }
    row = db.tables.ratings["r1"]
    assert (row.score, row.revision, row.sentiment) == (1, 1, "negative")
    decided = dict(db.tables.decisions)
    # The same revision again (a replay), an older one late, and 1 corrected to 2 (the same rules
    # again): nothing new is decided or sent; the stored answer follows the newest revision only.
    assert await consume(db, use_case, reclicked("r1", 1, 1), rating("r1", 5)) == []
    assert await consume(db, use_case, reclicked("r1", 2, 2)) == []
    assert dict(db.tables.decisions) == decided
    assert (db.tables.ratings["r1"].score, db.tables.ratings["r1"].revision) == (2, 2)


async def test_a_batch_with_an_answer_and_its_reclick_decides_on_the_newest() -> None:
    db, clock = MemoryActions(), Clock()
    records = await consume(db, handler(clock), rating("r1", 5), reclicked("r1", 1, 1))
    assert Counter(n.template for n in notes(records)) == {"low_score_followup": 1, "csm_alert": 1}
    assert db.tables.ratings["r1"].revision == 1
