"""The vocabulary of permissions: four roles for people, scopes for every kind of call (pure).

A scope names one capability on one kind of data (``scores:read``). A role is a named bundle of
scopes for people; machine tokens carry scopes directly, bounded by the role they were issued under.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    CSM = "csm"
    VIEWER = "viewer"


class Scope(StrEnum):
    # ingestion (machines only: sites' servers, helpdesks, product analytics)
    RATINGS_WRITE = "ratings:write"
    INTERACTIONS_WRITE = "interactions:write"
    USAGE_WRITE = "usage:write"
    # reading what the platform computed
    SCORES_READ = "scores:read"
    VERBATIMS_READ = "verbatims:read"
    CUSTOMERS_READ = "customers:read"
    ALERTS_READ = "alerts:read"
    RULES_READ = "rules:read"
    DELIVERIES_READ = "deliveries:read"
    OUTBOX_READ = "outbox:read"
    AUDIT_READ = "audit:read"
    # acting and administering
    ALERTS_WRITE = "alerts:write"
    CUSTOMERS_ADMIN = "customers:admin"
    RULES_ADMIN = "rules:admin"
    SURVEYS_ADMIN = "surveys:admin"
    SOURCES_ADMIN = "sources:admin"
    TOKENS_ADMIN = "tokens:admin"
    USERS_ADMIN = "users:admin"
    GDPR_ADMIN = "gdpr:admin"


#: Posting data in is what integrations do; no person's session carries these (a stolen browser session
#: cannot inject ratings), while a token issued under any role may.
MACHINE_SCOPES: frozenset[Scope] = frozenset(
    {Scope.RATINGS_WRITE, Scope.INTERACTIONS_WRITE, Scope.USAGE_WRITE}
)

_VIEWER = frozenset({Scope.SCORES_READ, Scope.VERBATIMS_READ})
_CSM = _VIEWER | {Scope.CUSTOMERS_READ, Scope.ALERTS_READ, Scope.ALERTS_WRITE, Scope.DELIVERIES_READ}
_MANAGER = _CSM | {Scope.RULES_READ, Scope.RULES_ADMIN, Scope.SURVEYS_ADMIN}
_ADMIN = frozenset(Scope) - MACHINE_SCOPES

#: Which scopes each role holds. Rows are cumulative: every role holds what the one below it holds.
ROLE_SCOPES: Mapping[Role, frozenset[Scope]] = {
    Role.VIEWER: _VIEWER,
    Role.CSM: frozenset(_CSM),
    Role.MANAGER: frozenset(_MANAGER),
    Role.ADMIN: _ADMIN,
}

#: Roles that see every segment and every account, and distributions of any group size.
ALL_DATA_ROLES: frozenset[Role] = frozenset({Role.ADMIN, Role.MANAGER})

#: What the bootstrap admin key may do: create the first people and tokens, nothing else.
BOOTSTRAP_SCOPES: frozenset[Scope] = frozenset({Scope.USERS_ADMIN, Scope.TOKENS_ADMIN})


class UnknownScope(ValueError):
    """A scope or role name that is not part of the vocabulary."""


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    """Scope names from a token row, a claim or a request; an unknown name is refused, not ignored."""
    out: set[Scope] = set()
    for name in names:
        try:
            out.add(Scope(name))
        except ValueError:
            raise UnknownScope(f"unknown scope {name!r}") from None
    return frozenset(out)


def parse_role(name: str) -> Role:
    try:
        return Role(name)
    except ValueError:
        raise UnknownScope(f"unknown role {name!r}") from None


def grantable_scopes(role: Role) -> frozenset[Scope]:
    """The scopes a token issued under ``role`` may carry: the role's own plus the ingestion scopes."""
    return ROLE_SCOPES[role] | MACHINE_SCOPES


def excess_scopes(role: Role, scopes: Iterable[Scope]) -> frozenset[Scope]:
    """Scopes asked for a token that its role does not allow (empty when the request is acceptable)."""
    return frozenset(scopes) - grantable_scopes(role)
