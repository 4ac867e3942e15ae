"""The health store's batch statements on the real PostgreSQL: a batch's evidence, states, saves and rule
facts, read and written for several subjects at once, are each subject's own (an account pools its
members, a lone customer is alone, the health's own alerts and resolved ones do not count)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from services.actions.health.evidence import Evidence, Observation, RatingPoint
from services.actions.health.model import Band
from services.actions.health.transitions import HealthPoint, HealthState
from services.actions.ports import HealthAlert, HealthSave, Subject
from services.actions.repository import PgTransactions
from shared.db import make_engine
from shared.scales import Metric
from tests.unit.test_actions_health_handler import rating

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
ACC = Subject("account", "acc-1")
LONE = Subject("customer", "c9")
EMPTY = Subject("customer", "c-none")
OTHER = Subject("account", "acc-2")


def _at(hours: int) -> datetime:
    return T0 + timedelta(hours=hours)


async def _seed(url: str) -> None:
    statements: list[tuple[str, dict[str, Any]]] = [
        (
            "INSERT INTO actions.account_members (account_id, customer_id) VALUES "
            "('acc-1', 'c1'), ('acc-1', 'c2'), ('acc-2', 'c3')",
            {},
        ),
        (
            "INSERT INTO actions.health_ratings (rating_id, customer_id, metric, score, normalized, "
            "positive, occurred_at) VALUES ('r2', 'c1', 'csat', 2, 0.25, false, :t3), "
            "('r1', 'c1', 'csat', 5, 1.0, true, :t1), ('r3', 'c2', 'nps', 9, 0.9, true, :t2), "
            "('r9', 'c9', 'csat', 1, 0.0, false, :t4), ('r5', 'c3', 'csat', 4, 0.75, true, :t5)",
            {"t1": _at(1), "t2": _at(2), "t3": _at(3), "t4": _at(4), "t5": _at(5)},
        ),
        (
            "INSERT INTO actions.usage_observations (observation_id, account_id, customer_id, observed_at, "
            "received_at, signals, source) VALUES "
            "('o1', 'acc-1', 'c1', :t2, :t2, CAST(:s1 AS jsonb), 'crm'), "
            "('o2', 'acc-1', NULL, :t1, :t1, CAST(:s2 AS jsonb), 'crm'), "
            "('o3', 'acc-1', 'c7', :t1, :t1, CAST(:s1 AS jsonb), 'crm'), "
            "('o4', NULL, 'c9', :t3, :t3, CAST(:s2 AS jsonb), 'crm')",
            {
                "t1": _at(1),
                "t2": _at(2),
                "t3": _at(3),
                "s1": json.dumps({"logins": 3}),
                "s2": json.dumps({"seats": 10, "tickets": 2}),
            },
        ),
        (
            "INSERT INTO actions.alerts (alert_id, rule_id, customer_id, owner_email, priority, status) "
            "VALUES "
            "('a1', 'unhappy', 'c2', 'csm@example.com', 'high', 'open'), "
            "('a2', 'unhappy', 'c1', 'csm@example.com', 'high', 'resolved'), "
            "('a3', 'unhappy', 'c9', 'csm@example.com', 'high', 'acknowledged'), "
            "('a4', 'unhappy', 'c9', 'csm@example.com', 'high', 'open'), "
            "('a5', 'health_falls', 'c9', 'csm@example.com', 'high', 'open')",
            {},
        ),
    ]
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for query, params in statements:
                await conn.execute(text(query), params)
    finally:
        await engine.dispose()


async def test_a_batch_of_subjects_reads_and_writes_each_subjects_own_health(database_url: str) -> None:
    await _seed(database_url)
    engine = make_engine(database_url)
    try:
        async with PgTransactions(engine).begin() as stores:
            found = await stores.health.evidence(subjects=[LONE, ACC, EMPTY])
            assert list(found) == [LONE, ACC, EMPTY]
            assert found[ACC] == Evidence(
                (
                    RatingPoint("r1", "c1", Metric.CSAT, 5, 1.0, True, _at(1)),
                    RatingPoint("r3", "c2", Metric.NPS, 9, 0.9, True, _at(2)),
                    RatingPoint("r2", "c1", Metric.CSAT, 2, 0.25, False, _at(3)),
                ),
                (
                    Observation("o2", None, _at(1), {"seats": 10.0, "tickets": 2.0}),
                    Observation("o1", "c1", _at(2), {"logins": 3.0}),
                ),
                1,
            )
            assert found[LONE] == Evidence(
                (RatingPoint("r9", "c9", Metric.CSAT, 1, 0.0, False, _at(4)),),
                (Observation("o4", "c9", _at(3), {"seats": 10.0, "tickets": 2.0}),),
                2,
            )
            assert found[EMPTY] == Evidence()
            assert await stores.health.states(subjects=[ACC, LONE]) == {ACC: (None, []), LONE: (None, [])}
            await stores.health.save(
                saves=[
                    HealthSave(
                        ACC,
                        HealthState(_at(3), 71.5, Band.HEALTHY, _at(3), 1),
                        HealthPoint(_at(3), 71.5, Band.HEALTHY),
                        None,
                        None,
                        [{"id": "csat"}],
                    ),
                    HealthSave(LONE, HealthState(_at(4), 30.0, Band.AT_RISK, _at(4), 1), None, -5.0, 2, []),
                ]
            )
        async with PgTransactions(engine).begin() as stores:
            # a later recomputation moves the account's band (a new point) and updates the lone customer
            await stores.health.save(
                saves=[
                    HealthSave(
                        ACC,
                        HealthState(_at(6), 40.0, Band.AT_RISK, _at(6), 2),
                        HealthPoint(_at(6), 40.0, Band.AT_RISK),
                        -31.5,
                        None,
                        [],
                    ),
                    HealthSave(LONE, HealthState(_at(6), 31.0, Band.AT_RISK, _at(4), 1), None, -4.0, 2, []),
                ]
            )
            # a replay of the same point overwrites it rather than adding one
            await stores.health.save(
                saves=[
                    HealthSave(
                        ACC,
                        HealthState(_at(6), 41.0, Band.AT_RISK, _at(6), 2),
                        HealthPoint(_at(6), 41.0, Band.AT_RISK),
                        -30.5,
                        None,
                        [],
                    ),
                ]
            )
        async with PgTransactions(engine).begin() as stores:
            states = await stores.health.states(subjects=[OTHER, ACC, LONE])
            assert states == {
                OTHER: (None, []),
                ACC: (
                    HealthState(_at(6), 41.0, Band.AT_RISK, _at(6), 2),
                    [HealthPoint(_at(3), 71.5, Band.HEALTHY), HealthPoint(_at(6), 41.0, Band.AT_RISK)],
                ),
                LONE: (HealthState(_at(6), 31.0, Band.AT_RISK, _at(4), 1), []),
            }
            facts = await stores.health.rule_facts(subjects=[ACC, LONE, OTHER, ACC])
            assert facts == {
                ACC: {"score": 41.0, "band": "at_risk", "previous_band": "healthy", "delta_30d": -30.5},
                LONE: {"score": 31.0, "band": "at_risk", "previous_band": None, "delta_30d": -4.0},
            }
            # the health's own alert is no input of an account's health
            alert = HealthAlert("health:account:acc-1:2", ACC, "csm@example.com", None, "normal", {})
            assert await stores.health.open_alert(alert=alert, now=_at(6))
            assert (await stores.health.evidence(subjects=[ACC]))[ACC].open_alerts == 1
            # a batch's falls: the owners read at once, the alerts written at once (a replay adds none)
            await stores.health.upsert_account(account_id="acc-2", fields={"owner_email": "bo@example.com"})
            owners = await stores.health.accounts(account_ids=["acc-2", "acc-missing"])
            assert list(owners) == ["acc-2"] and owners["acc-2"]["owner_email"] == "bo@example.com"
            falls = [
                HealthAlert(
                    "health:account:acc-2:1", OTHER, "bo@example.com", None, "high", {"band": "critical"}
                ),
                HealthAlert("health:customer:c9:1", LONE, "csm@example.com", "Ana", "normal", {}),
                alert,
            ]
            assert await stores.health.open_alerts(alerts=falls, now=_at(7)) == {
                "health:account:acc-2:1",
                "health:customer:c9:1",
            }
            assert await stores.health.open_alerts(alerts=falls, now=_at(8)) == set()
            # the health's own alerts stay out of the lone customer's evidence too
            assert (await stores.health.evidence(subjects=[LONE]))[LONE].open_alerts == 2
        async with PgTransactions(engine).connect() as stores:
            stored = await stores.health.health(subject=ACC)
        assert stored is not None and stored["explanation"] == [] and len(stored["history"]) == 2
    finally:
        await engine.dispose()


async def test_new_answers_join_their_customers_to_their_accounts_in_the_same_statement(
    database_url: str,
) -> None:
    engine = make_engine(database_url)
    tx = PgTransactions(engine)
    try:
        first = [
            rating("j1", 2, "cj1", "acc-j", _at(1)),
            rating("j2", 4, "cj2", "acc-j", _at(2)),
            rating("j3", 1, "cj3", None, _at(3)),  # no account: stored, joins nothing
        ]
        async with tx.begin() as stores:
            fresh = await stores.health.add_ratings(ratings=first)
            assert [r.rating_id for r in fresh] == ["j1", "j2", "j3"]
            joined = await stores.health.accounts_of(customer_ids=["cj1", "cj2", "cj3"])
        assert joined == {"cj1": ["acc-j"], "cj2": ["acc-j"]}
        # A replay of j1 with another account is not new: it changes no membership.
        async with tx.begin() as stores:
            again = await stores.health.add_ratings(ratings=[rating("j1", 2, "cj1", "acc-other", _at(1))])
            assert again == []
            assert await stores.health.accounts_of(customer_ids=["cj1"]) == {"cj1": ["acc-j"]}
    finally:
        await engine.dispose()


async def test_a_recomputations_reads_in_one_statement_are_the_separate_reads_rows(database_url: str) -> None:
    """``inputs`` (the consumer's one round trip) gives what ``latest_model``, ``evidence`` and ``states``
    of the subjects with any evidence give, and leaves out a model document the caller holds already."""
    await _seed(database_url)
    engine = make_engine(database_url)
    try:
        async with PgTransactions(engine).begin() as stores:
            await stores.health.save(
                saves=[
                    HealthSave(
                        ACC,
                        HealthState(_at(3), 71.5, Band.HEALTHY, _at(3), 1),
                        HealthPoint(_at(3), 71.5, Band.HEALTHY),
                        None,
                        None,
                        [],
                    ),
                    HealthSave(
                        LONE, HealthState(_at(4), 30.0, Band.AT_RISK, _at(4), 1), None, -5.0, None, []
                    ),
                ]
            )
        async with PgTransactions(engine).begin() as stores:
            subjects = [LONE, EMPTY, ACC, OTHER]
            got = await stores.health.inputs(subjects=subjects, known_version=None)
            assert got.model is None
            assert list(got.evidence) == subjects
            assert got.evidence == await stores.health.evidence(subjects=subjects)
            # EMPTY has no ratings or observations: no state read (nor locked) for it
            assert got.states == await stores.health.states(subjects=[LONE, ACC, OTHER])
            assert got.states[ACC] == (
                HealthState(_at(3), 71.5, Band.HEALTHY, _at(3), 1),
                [HealthPoint(_at(3), 71.5, Band.HEALTHY)],
            )
            assert got.states[OTHER] == (None, [])
            # customers stand for their accounts (c1, c2: acc-1; c3: acc-2), or themselves without one
            # (c-none); one already given (c9: LONE) comes once
            both = await stores.health.inputs(
                subjects=[LONE], customers=["c3", "c1", "c-none", "c2", "c9"], known_version=None
            )
            assert list(both.evidence) == [LONE, ACC, OTHER, EMPTY]
            assert both.evidence == await stores.health.evidence(subjects=[LONE, ACC, OTHER, EMPTY])
            assert both.states == got.states
            # the owners of the stored accounts among the subjects with evidence (what ``accounts`` gives)
            assert got.owners == {}
            await stores.health.upsert_account(
                account_id="acc-1", fields={"owner_email": "olga@example.com", "owner_name": "Olga"}
            )
            owned = await stores.health.inputs(subjects=[ACC, OTHER, LONE], known_version=None)
            assert owned.owners == {"acc-1": ("olga@example.com", "Olga")}
            nothing = await stores.health.inputs(subjects=[EMPTY], known_version=None)
            assert nothing.states == {} and nothing.evidence == {EMPTY: Evidence()}
            v1 = await stores.health.save_model(document={"a": 1}, origin="test", author=None)
            v2 = await stores.health.save_model(document={"b": [1.5, "x"]}, origin="test", author=None)
            assert await stores.health.latest_model() == (v2, {"b": [1.5, "x"]})
            for known, model in (
                (None, (v2, {"b": [1.5, "x"]})),
                (v1, (v2, {"b": [1.5, "x"]})),
                (v2, (v2, None)),
            ):
                assert (await stores.health.inputs(subjects=[ACC], known_version=known)).model == model
    finally:
        await engine.dispose()


async def test_a_read_only_session_reads_one_snapshot(database_url: str) -> None:
    """GET /v1/accounts/{id}/health reads the health, the account and its owner in three statements of
    one read-only session: a reassignment committed between them is not seen half-way."""
    engine = make_engine(database_url)
    owner = "UPDATE actions.accounts SET owner_email = :o WHERE account_id = 'acc-s'"
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO actions.accounts (account_id, owner_email) "
                    "VALUES ('acc-s', 'ana@example.com')"
                )
            )
        tx = PgTransactions(engine)
        async with tx.read_only() as stores:
            first = await stores.health.account(account_id="acc-s")
            async with engine.begin() as conn:
                await conn.execute(text(owner), {"o": "bob@example.com"})
            again = await stores.health.account(account_id="acc-s")
            assert first is not None and again == first and first["owner_email"] == "ana@example.com"
        async with tx.read_only() as stores:
            later = await stores.health.account(account_id="acc-s")
            assert later is not None and later["owner_email"] == "bob@example.com"
    finally:
        await engine.dispose()
