"""Roles, scopes and what a Principal may see: the matrix every service will enforce."""

from __future__ import annotations

import pytest

from shared.identity.principal import (
    InvalidGrant,
    Principal,
    PrincipalKind,
    SegmentGrant,
    bootstrap_principal,
    grant_texts,
    parse_grants,
)
from shared.identity.scopes import (
    MACHINE_SCOPES,
    ROLE_SCOPES,
    Role,
    Scope,
    UnknownScope,
    excess_scopes,
    parse_role,
    parse_scopes,
)

A, M, C, V = Role.ADMIN, Role.MANAGER, Role.CSM, Role.VIEWER

# scope -> roles holding it. Written out whole so that a change to a role is a visible change here.
MATRIX: dict[Scope, set[Role]] = {
    Scope.RATINGS_WRITE: set(),
    Scope.INTERACTIONS_WRITE: set(),
    Scope.USAGE_WRITE: set(),
    Scope.SCORES_READ: {A, M, C, V},
    Scope.VERBATIMS_READ: {A, M, C, V},
    Scope.CUSTOMERS_READ: {A, M, C},
    Scope.ALERTS_READ: {A, M, C},
    Scope.ALERTS_WRITE: {A, M, C},
    Scope.DELIVERIES_READ: {A, M, C},
    Scope.RULES_READ: {A, M},
    Scope.RULES_ADMIN: {A, M},
    Scope.SURVEYS_ADMIN: {A, M},
    Scope.OUTBOX_READ: {A},
    Scope.AUDIT_READ: {A},
    Scope.CUSTOMERS_ADMIN: {A},
    Scope.SOURCES_ADMIN: {A},
    Scope.TOKENS_ADMIN: {A},
    Scope.USERS_ADMIN: {A},
    Scope.GDPR_ADMIN: {A},
}


def test_the_matrix_names_every_scope() -> None:
    assert set(MATRIX) == set(Scope)


@pytest.mark.parametrize("scope", list(Scope), ids=str)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_role_scope_matrix(role: Role, scope: Scope) -> None:
    assert (scope in ROLE_SCOPES[role]) is (role in MATRIX[scope])


def test_roles_are_cumulative_and_no_person_posts_data() -> None:
    assert ROLE_SCOPES[V] < ROLE_SCOPES[C] < ROLE_SCOPES[M] < ROLE_SCOPES[A]
    assert not any(ROLE_SCOPES[r] & MACHINE_SCOPES for r in Role)


@pytest.mark.parametrize(
    ("role", "asked", "excess"),
    [
        (V, {Scope.SCORES_READ, Scope.RATINGS_WRITE}, set()),  # ingestion fits any role
        (V, {Scope.ALERTS_READ}, {Scope.ALERTS_READ}),
        (C, {Scope.RULES_ADMIN, Scope.ALERTS_WRITE}, {Scope.RULES_ADMIN}),
        (A, set(Scope), set()),
    ],
)
def test_token_scopes_are_bounded_by_their_role(role: Role, asked: set[Scope], excess: set[Scope]) -> None:
    assert excess_scopes(role, asked) == excess


def test_unknown_names_are_refused_not_ignored() -> None:
    assert parse_scopes(["scores:read", "alerts:write"]) == {Scope.SCORES_READ, Scope.ALERTS_WRITE}
    with pytest.raises(UnknownScope, match="scores:write"):
        parse_scopes(["scores:read", "scores:write"])
    assert parse_role("csm") is Role.CSM
    with pytest.raises(UnknownScope, match="root"):
        parse_role("root")


@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ("store:paris-1", (("store", "paris-1"),)),
        ("store:paris-1,channel:chat", (("channel", "chat"), ("store", "paris-1"))),
        (" channel:chat , store:a:b ", (("channel", "chat"), ("store", "a:b"))),
    ],
)
def test_grants_parse_to_sorted_pairs(text: str, pairs: tuple[tuple[str, str], ...]) -> None:
    grant = SegmentGrant.parse(text)
    assert grant.pairs == pairs
    assert SegmentGrant.parse(str(grant)) == grant


@pytest.mark.parametrize(
    "text", ["", "store", "store:", ":paris", "st ore:x", "store:a,store:b", "x:" + "v" * 201]
)
def test_malformed_grants_are_refused(text: str) -> None:
    with pytest.raises(InvalidGrant):
        SegmentGrant.parse(text)


def test_grants_round_trip_with_none_meaning_every_segment() -> None:
    assert parse_grants(None) is None
    assert parse_grants([]) == frozenset()
    grants = parse_grants(["store:b", "store:a"])
    assert grant_texts(grants) == ["store:a", "store:b"]
    assert grant_texts(None) is None


def _person(
    role: Role, segments: list[str] | None = None, accounts: set[str] | None = None, owner: str | None = None
) -> Principal:
    return Principal(
        subject="u_1",
        kind=PrincipalKind.PERSON,
        role=role,
        scopes=ROLE_SCOPES[role],
        segments=parse_grants(segments),
        accounts=frozenset(accounts or ()),
        owner_email=owner,
    )


PARIS = ["store:paris-1"]
PARIS_CHAT = ["store:paris-1,channel:chat"]


@pytest.mark.parametrize(
    ("segments", "filters", "allowed"),
    [
        (None, {}, True),
        (None, {"store": "lyon-2"}, True),
        (PARIS, {"store": "paris-1"}, True),
        (PARIS, {"store": "paris-1", "channel": "chat"}, True),  # narrower than the grant
        (PARIS, {}, False),  # the whole spans every store
        (PARIS, {"channel": "chat"}, False),  # every store's chat
        (PARIS, {"store": "paris-2"}, False),
        (PARIS, {"store": "Paris-1"}, False),  # values compare exactly
        (PARIS_CHAT, {"store": "paris-1"}, False),  # the grant is only the chat part of it
        (PARIS_CHAT, {"store": "paris-1", "channel": "chat", "country": "fr"}, True),
        (["store:paris-1", "store:lyon-2"], {"store": "lyon-2"}, True),
        ([], {}, False),
        ([], {"store": "paris-1"}, False),
    ],
)
def test_segment_allowed(segments: list[str] | None, filters: dict[str, str], allowed: bool) -> None:
    assert _person(Role.VIEWER, segments).segment_allowed(filters) is allowed


@pytest.mark.parametrize(
    ("segments", "dimension", "values"),
    [
        (None, "store", None),
        (["store:paris-1", "store:lyon-2", "channel:chat"], "store", {"paris-1", "lyon-2"}),
        (["store:paris-1"], "channel", set()),
        (PARIS_CHAT, "store", set()),
    ],
)
def test_visible_values_of_a_breakdown(
    segments: list[str] | None, dimension: str, values: set[str] | None
) -> None:
    found = _person(Role.VIEWER, segments).visible_values(dimension)
    assert found == (None if values is None else frozenset(values))


@pytest.mark.parametrize(
    ("role", "n", "min_group", "sees"),
    [
        (Role.VIEWER, 4, 5, False),
        (Role.VIEWER, 5, 5, True),
        (Role.CSM, 1, 5, False),
        (Role.MANAGER, 1, 5, True),
        (Role.ADMIN, 0, 5, True),
        (None, 4, 5, False),  # a source key
    ],
)
def test_distribution_only_above_the_minimum_group_below_manager(
    role: Role | None, n: int, min_group: int, sees: bool
) -> None:
    principal = Principal(subject="x", kind=PrincipalKind.SOURCE, role=role, scopes=frozenset())
    assert principal.sees_distribution(n, min_group) is sees


@pytest.mark.parametrize(
    ("principal", "account_id", "owner_email", "owns"),
    [
        (_person(Role.MANAGER), "acc-9", None, True),
        (_person(Role.CSM, accounts={"acc-1"}, owner="ana@x.com"), "acc-1", None, True),
        (_person(Role.CSM, accounts={"acc-1"}, owner="ana@x.com"), "acc-2", None, False),
        (_person(Role.CSM, owner="ana@x.com"), None, " Ana@X.com ", True),
        (_person(Role.CSM, owner="ana@x.com"), None, "bob@x.com", False),
        (_person(Role.CSM), None, "", False),  # no owner on either side never matches
        (_person(Role.CSM), None, None, False),
    ],
)
def test_a_csm_owns_only_their_accounts(
    principal: Principal, account_id: str | None, owner_email: str | None, owns: bool
) -> None:
    assert principal.owns(account_id=account_id, owner_email=owner_email) is owns


def test_log_name_carries_no_personal_data_and_bootstrap_is_narrow() -> None:
    person = _person(Role.CSM, owner="ana@example.com")
    assert person.log_name == "person:u_1"
    boot = bootstrap_principal()
    assert boot.scopes == {Scope.USERS_ADMIN, Scope.TOKENS_ADMIN}
    assert boot.missing([Scope.SCORES_READ, Scope.USERS_ADMIN]) == {Scope.SCORES_READ}
    assert boot.can(Scope.TOKENS_ADMIN) and not boot.can(Scope.GDPR_ADMIN)
