"""The claim statement that also confirms, on the real PostgreSQL: one statement both lands earlier
confirmations and claims new ids, and every id keeps the meaning a claim and a confirmation give it."""

from __future__ import annotations

import pytest

from services.collector.ports import Claim, ClaimState
from services.collector.repository import PgStore
from shared.db import make_engine

pytestmark = pytest.mark.integration


async def test_one_statement_confirms_earlier_ids_and_claims_new_ones(database_url: str) -> None:
    store = PgStore(engine=make_engine(database_url, pool_size=1), timeout_s=10)
    try:
        first = [Claim("cc-1", "s", b"f1"), Claim("cc-2", "s", b"f2")]
        assert await store.claim(claims=first, lease_s=30) == {
            "cc-1": ClaimState.CLAIMED,
            "cc-2": ClaimState.CLAIMED,
        }
        states = await store.claim(claims=[Claim("cc-3", "s", b"f3")], lease_s=30, confirm=["cc-1", "cc-2"])
        assert states == {"cc-3": ClaimState.CLAIMED}
        for rid in ("cc-1", "cc-2"):
            found = await store.standing(rating_id=rid)
            assert found is not None and found.state == "accepted" and found.first_accepted_at is not None
        third = await store.standing(rating_id="cc-3")
        assert third is not None and third.state == "pending"
        again = [Claim("cc-1", "s", b"f1"), Claim("cc-2", "s", b"changed"), Claim("cc-3", "s", b"f3")]
        assert await store.claim(claims=again, lease_s=30, confirm=["cc-4-unknown"]) == {
            "cc-1": ClaimState.REPLAY,
            "cc-2": ClaimState.CONFLICT,
            "cc-3": ClaimState.PENDING,
        }
        # Confirmations alone: a statement of their own.
        await store.claim(claims=[], lease_s=30, confirm=["cc-3"])
        third = await store.standing(rating_id="cc-3")
        assert third is not None and third.state == "accepted"
    finally:
        await store.close()
