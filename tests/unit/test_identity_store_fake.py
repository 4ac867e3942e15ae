"""The in-memory identity store passes the same contract as the PostgreSQL adapter."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from shared.identity.ports import IdentityStore, StoreUnavailable
from tests.fakes.identity_store import MemoryIdentityStore
from tests.identity_contract import SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
async def test_contract(scenario: Callable[[IdentityStore], Awaitable[None]]) -> None:
    await scenario(MemoryIdentityStore())


async def test_a_down_store_says_so() -> None:
    store = MemoryIdentityStore()
    store.down = True
    with pytest.raises(StoreUnavailable):
        await store.token_by_hash(token_hash=b"x" * 32)
