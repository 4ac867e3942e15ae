"""The console's views, in navigation order, with the scope each needs (pure).

The layout shows a person only the views their role opens; every route checks the same scope
server-side (``deps.session.person(scope)``), so hiding a link is a courtesy, never the protection.
A view still being built has ``ready=False``: its address answers a "being built" page, and the
engineer who builds it sets ``ready=True`` and includes its router in ``bootstrap``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.identity.principal import Principal
from shared.identity.scopes import Scope


@dataclass(frozen=True, slots=True)
class View:
    key: str  # names its texts: nav.<key>, home.view.<key>
    path: str
    scope: Scope
    ready: bool = False


VIEWS: tuple[View, ...] = (
    View("scores", "/scores", Scope.SCORES_READ, ready=True),
    View("segments", "/segments", Scope.SCORES_READ, ready=True),
    View("verbatims", "/verbatims", Scope.VERBATIMS_READ, ready=True),
    View("alerts", "/alerts", Scope.ALERTS_READ, ready=True),
    View("customers", "/customers", Scope.CUSTOMERS_READ, ready=True),
    View("rules", "/rules", Scope.RULES_READ, ready=True),
    View("people", "/admin/people", Scope.USERS_ADMIN, ready=True),
)


def views_for(principal: Principal) -> tuple[View, ...]:
    return tuple(v for v in VIEWS if principal.can(v.scope))


def view_named(key: str) -> View:
    return next(v for v in VIEWS if v.key == key)
