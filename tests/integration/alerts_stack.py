"""Known alerts for the Alerts view's tests: two customers owned by two CSMs, each with a low rating the
default playbook turns into an alert (a strategic account's with a 24 h SLA that escalates, an ordinary
one's without SLA), on the Rules view's stack (actions and notifier apps, the console in front).
"""

from __future__ import annotations

from typing import Any

import httpx

from shared.identity.ports import User
from shared.identity.scopes import Role
from shared.topics import Topics
from tests.helpers import produce, wait_for
from tests.infra import Infra
from tests.integration.rules_stack import ADMIN_KEY, RulesStack
from tests.integration.test_actions import rating

CSM_A = "carla.csm@example.com"
CSM_B = "dan.csm@example.com"
MANAGER = "maya.manager@example.com"
VIEWER = "vic.viewer@example.com"
#: The accounts (B2B companies) of cus-a and cus-b, which Carla and Dan own: the scorer and the notifier
#: decide a CSM's customers by the accounts their ratings and messages name.
ACCOUNT_A = "acc-a"
ACCOUNT_B = "acc-b"
#: The strategic customer's comment, with characters a page must escape.
COMMENT_A = "Livraison en retard de 3 jours <b>et</b> personne ne répond au téléphone"


async def actions_api(stack: RulesStack, method: str, path: str, **kw: Any) -> httpx.Response:
    async with stack.client(stack.actions, "http://actions") as client:
        return await client.request(method, path, headers=ADMIN_KEY, **kw)


async def alerts_of(stack: RulesStack, **params: Any) -> list[dict[str, Any]]:
    """The actions service's own answer (admin key): what the console's figures must equal."""
    answer = await actions_api(stack, "GET", "/v1/alerts", params={"limit": 500, **params})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["alerts"]
    return found


async def customer(stack: RulesStack, customer_id: str, **fields: Any) -> None:
    answer = await actions_api(stack, "PUT", f"/v1/customers/{customer_id}", json=fields)
    assert answer.status_code == 200, answer.text


async def people(stack: RulesStack, *, with_accounts: bool = False) -> dict[str, User]:
    """``with_accounts``: Carla and Dan own their customers' accounts too, not only by their address
    (the Customer view reads the scorer and the notifier, which decide by account); without it an
    alert handed over leaves its former owner's reach."""
    return {
        email: await stack.person(email, role, name, frozenset(accounts if with_accounts else ()))
        for email, role, name, accounts in (
            (CSM_A, Role.CSM, "Carla CSM", {ACCOUNT_A}),
            (CSM_B, Role.CSM, "Dan CSM", {ACCOUNT_B}),
            (MANAGER, Role.MANAGER, "Maya Manager", set()),
            (VIEWER, Role.VIEWER, "Vic Viewer", set()),
        )
    }


async def low_rating(
    stack: RulesStack, infra: Infra, topics: Topics, rid: str, customer_id: str, score: int, **kw: Any
) -> dict[str, Any]:
    """Publish one rating as the collector does; wait for the alert actions raises on it."""
    await produce(infra.bootstrap, [rating(rid, score, topic=topics.ratings, customer=customer_id, **kw)])

    async def found() -> list[dict[str, Any]]:
        return [a for a in await alerts_of(stack, customer_id=customer_id) if a["rating_id"] == rid]

    alerts = await wait_for(found, until=lambda a: len(a) == 1, timeout_s=60)
    return alerts[0]


async def seed(stack: RulesStack, infra: Infra, topics: Topics) -> dict[str, dict[str, Any]]:
    """cus-a (Carla's, strategic) rated 2 with a comment; cus-b (Dan's) rated 1 without one."""
    await customer(stack, "cus-a", owner_email=CSM_A, owner_name="Carla CSM", tier="strategic", value=120000)
    await customer(stack, "cus-b", owner_email=CSM_B, owner_name="Dan CSM", tier="standard")
    a = await low_rating(stack, infra, topics, "r-a1", "cus-a", 2, comment=COMMENT_A, account=ACCOUNT_A)
    b = await low_rating(stack, infra, topics, "r-b1", "cus-b", 1, account=ACCOUNT_B)
    return {"a": a, "b": b}
