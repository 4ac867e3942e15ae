"""Account health on the in-memory stores: inputs stored once, the health equal to the model's, one alert
per fall, replays idempotent, the at-risk list ranked by value x risk and filtered by owner. The same
paths on PostgreSQL and the broker: tests/integration/test_health.py."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta

from services.actions.health.evidence import Evidence, Observation, RatingPoint, pool
from services.actions.health.model import Band, load_health_file
from services.actions.health.score import evaluate
from services.actions.health_handler import HealthHandler, explanation, health_alert_id
from services.actions.ports import Subject
from services.actions.settings import DEFAULT_HEALTH
from services.collector.domain import RatingIn, normalize
from shared import events as ev
from shared.envelope import decode
from shared.topics import Topics
from tests.fakes.actions_store import MemoryActions

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
MODEL = load_health_file(DEFAULT_HEALTH)
TOPICS = Topics(prefix="unit.")


def health() -> HealthHandler:
    return HealthHandler(model=MODEL, topics=TOPICS, default_owner="csm@example.com")


def rating(rid: str, score: int, customer: str, account: str | None, at: datetime) -> ev.RatingSubmitted:
    body = {
        "rating_id": rid,
        "metric": "csat",
        "scale": "1-5",
        "score": score,
        "customer": {"id": customer},
        "occurred_at": at.isoformat(),
        **({"account": {"id": account}} if account else {}),
    }
    return normalize(RatingIn.model_validate(body), received_at=at)


def usage(
    oid: str, customer: str | None, account: str | None, at: datetime, **signals: float
) -> ev.UsageObserved:
    return ev.UsageObserved(
        observation_id=oid,
        customer_id=customer,
        account_id=account,
        observed_at=at,
        received_at=at,
        signals=signals,
    )


async def feed(
    db: MemoryActions,
    handler: HealthHandler,
    ratings: list[ev.RatingSubmitted] = [],  # noqa: B006 - read only
    observations: list[ev.UsageObserved] = [],  # noqa: B006 - read only
) -> list[ev.HealthChanged]:
    async with db.begin() as stores:
        records = await handler.on_batch(stores, ratings=ratings, observations=observations, now=NOW)
    out = []
    for r in records:
        data = decode(headers=r.headers, key=r.key, value=r.value).data
        assert isinstance(data, ev.HealthChanged)
        out.append(data)
    return out


async def test_an_account_pools_its_contacts_and_equals_the_model() -> None:
    db, h = MemoryActions(), health()
    t0 = NOW - timedelta(days=3)
    ratings = [
        rating("r1", 5, "c1", "acc", t0),
        rating("r2", 4, "c1", "acc", t0 + timedelta(hours=1)),
        rating("r3", 2, "c2", "acc", t0 + timedelta(hours=2)),
    ]
    obs = [
        usage("o1", "c1", "acc", t0, logins_7d=6, features_used=4, tickets_open=0),
        usage("o2", "c2", "acc", t0, logins_7d=2, features_used=7, tickets_open=2),
    ]
    changed = await feed(db, h, ratings, obs)
    assert [(c.subject_kind, c.subject_id) for c in changed] == [("account", "acc")]
    expected = evaluate(
        MODEL,
        Evidence(tuple(RatingPoint.of(r) for r in ratings), tuple(Observation.of(o) for o in obs), 0),
        as_of=t0 + timedelta(hours=2),
    )
    assert changed[0].score == expected.score and changed[0].band == expected.band
    assert (
        sum(c.points for c in changed[0].components) == changed[0].score
        or abs(sum(c.points for c in changed[0].components) - (changed[0].score or 0)) < 1e-9
    )
    csat = next(c for c in changed[0].components if c.id == "csat")
    assert csat.value is not None and round(csat.value, 1) == 66.7  # 2 of 3 positive, over both contacts
    # the same evidence through pool() (each contact apart) gives the same health
    pooled = pool(
        [
            Evidence(tuple(RatingPoint.of(r) for r in ratings[:2]), (Observation.of(obs[0]),)),
            Evidence((RatingPoint.of(ratings[2]),), (Observation.of(obs[1]),)),
        ]
    )
    assert evaluate(MODEL, pooled, as_of=t0 + timedelta(hours=2)).score == expected.score


async def test_a_replay_changes_nothing_and_publishes_nothing() -> None:
    db, h = MemoryActions(), health()
    batch_r = [rating("r1", 5, "c1", "acc", NOW)]
    batch_o = [usage("o1", "c1", "acc", NOW, logins_7d=9, features_used=8, tickets_open=0)]
    assert len(await feed(db, h, batch_r, batch_o)) == 1
    before = await _health(db, Subject("account", "acc"))
    assert await feed(db, h, batch_r, batch_o) == []
    assert await _health(db, Subject("account", "acc")) == before


async def _health(db: MemoryActions, subject: Subject) -> dict[str, object] | None:
    async with db.connect() as stores:
        return await stores.health.health(subject=subject)


async def test_a_fall_to_at_risk_opens_one_alert_with_the_explanation() -> None:
    db, h = MemoryActions(), health()
    async with db.begin() as stores:
        await stores.health.upsert_account(account_id="acc", fields={"owner_email": "ana@example.com"})
    t = NOW - timedelta(days=10)
    first = await feed(db, h, observations=[usage("o1", None, "acc", t, logins_7d=10, features_used=8)])
    assert first[0].band == Band.HEALTHY
    # logins collapse: the band falls
    t2 = t + timedelta(days=1)
    fell = await feed(db, h, observations=[usage("o2", None, "acc", t2, logins_7d=1, features_used=2)])
    assert fell[0].fell and fell[0].band in (Band.AT_RISK, Band.CRITICAL)
    alerts = [a for a in db.tables.alerts.values() if a.draft.rule_id == "health_falls"]
    assert [a.draft.alert_id for a in alerts] == [health_alert_id(Subject("account", "acc"), 2)]
    assert alerts[0].draft.owner_email == "ana@example.com"
    assert {c["id"] for c in alerts[0].draft.context["components"]} == {c.id for c in MODEL.components}
    # a recomputation in the same band (and a replay) opens no second alert
    await feed(
        db,
        h,
        observations=[usage("o3", None, "acc", t2 + timedelta(hours=1), logins_7d=1.5, features_used=2)],
    )
    await feed(db, h, observations=[usage("o2", None, "acc", t2, logins_7d=1, features_used=2)])
    assert len([a for a in db.tables.alerts.values() if a.draft.rule_id == "health_falls"]) == 1


async def test_claimed_customer_ids_do_not_move_a_health() -> None:
    db, h = MemoryActions(), health()
    claimed = rating("r1", 1, "c1", None, NOW).model_copy(
        update={"provenance": ev.Provenance(key_kind=ev.KeyKind.PUBLISHABLE, identity=ev.Identity.CLAIMED)}
    )
    assert not claimed.customer_verified
    assert await feed(db, h, [claimed]) == []
    assert db.tables.health_ratings == {}


async def test_at_risk_list_ranks_by_value_times_risk_and_filters_by_owner() -> None:
    db, h = MemoryActions(), health()
    async with db.begin() as stores:
        await stores.health.upsert_account(
            account_id="big", fields={"owner_email": "ana@example.com", "value": 100}
        )
        await stores.health.upsert_account(
            account_id="small", fields={"owner_email": "bob@example.com", "value": 10}
        )
        await stores.health.upsert_account(
            account_id="fine", fields={"owner_email": "ana@example.com", "value": 500}
        )
    await feed(
        db,
        h,
        observations=[
            usage("o1", None, "big", NOW, logins_7d=2, features_used=2),
            usage("o2", None, "small", NOW, logins_7d=0, features_used=0),
            usage("o3", None, "fine", NOW, logins_7d=10, features_used=8),
        ],
    )
    async with db.connect() as stores:
        ranked = await stores.health.at_risk(owner=None, limit=10)
        ana = await stores.health.at_risk(owner="ANA@example.com", limit=10)
    assert [r["subject_id"] for r in ranked] == ["big", "small"]
    assert [r["subject_id"] for r in ana] == ["big"]


HEALTH_RULES = """
version: 1
rules:
  - id: at-risk-callback
    when: {health.band: at_risk}
    actions:
      - type: support_callback
        to: desk@example.com
"""


async def test_rules_read_the_accounts_stored_health() -> None:
    from services.actions.engine import Policy
    from services.actions.facts import HistoryWindow
    from services.actions.handlers import ActionsHandler
    from services.actions.rulebook import RuleBook
    from services.actions.rules import parse_document, parse_rules
    from services.actions.verbatims import DEFAULT_THEMES, load_taxonomy_file
    from tests.unit.test_actions_handlers import batch

    document = parse_document(HEALTH_RULES)
    use_case = ActionsHandler(
        rulebook=RuleBook(file_document=document, file_rules=parse_rules(document), file_origin="test"),
        taxonomy=load_taxonomy_file(DEFAULT_THEMES),
        policy=Policy(default_csm_email="csm@example.com"),
        topics=TOPICS,
        history=HistoryWindow(),
        clock=lambda: NOW,
        health=health(),
    )
    db = MemoryActions()
    t = NOW - timedelta(days=1)
    await feed(
        db,
        health(),
        observations=[
            usage("o1", None, "weak", t, logins_7d=2, features_used=3, tickets_open=1),
            usage("o2", None, "fine", t, logins_7d=10, features_used=8),
        ],
    )
    async with db.connect() as stores:
        facts = await stores.health.rule_facts(subjects=[Subject("account", "weak")])
    assert facts[Subject("account", "weak")]["band"] == "at_risk"
    async with db.begin() as stores:
        await use_case(
            stores, batch(rating("r-weak", 4, "c1", "weak", NOW), rating("r-fine", 4, "c2", "fine", NOW))
        )
    fired = {d.rating_id for d in db.tables.decisions.values() if d.rule_id == "at-risk-callback"}
    assert fired == {"r-weak"}


async def test_a_customer_in_no_account_gets_a_health_but_no_fall_alert() -> None:
    db, h = MemoryActions(), health()
    t = NOW - timedelta(days=1)
    first = await feed(db, h, observations=[usage("o1", "solo", None, t, logins_7d=10, features_used=8)])
    assert (first[0].subject_kind, first[0].band) == ("customer", Band.HEALTHY)
    fell = await feed(db, h, observations=[usage("o2", "solo", None, NOW, logins_7d=0, features_used=0)])
    assert fell[0].fell
    assert db.tables.alerts == {}


def test_the_stored_explanation_is_every_field_of_every_component_in_order() -> None:
    t0 = NOW - timedelta(days=1)
    ratings = [rating("r1", 5, "c1", "acc", t0), rating("r2", 1, "c2", "acc", t0 + timedelta(hours=1))]
    obs = [usage("o1", "c1", "acc", t0, logins_7d=6, features_used=4, tickets_open=1)]
    result = evaluate(
        MODEL,
        Evidence(tuple(RatingPoint.of(r) for r in ratings), tuple(Observation.of(o) for o in obs), 2),
        as_of=t0 + timedelta(hours=2),
    )
    got = explanation(result)
    assert got == [{**asdict(c), "detail": dict(c.detail)} for c in result.components]
    assert [list(x) for x in got] == [[f.name for f in fields(c)] for c in result.components]
    assert any(x["detail"] for x in got)
