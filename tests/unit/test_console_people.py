"""The console's identity use cases on the in-memory stores: OpenID matching, people changed, audit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from services.console.people import (
    Actor,
    Method,
    OidcRefusal,
    PersonChanges,
    grants_from_lines,
    issue_sign_in_link,
    link_hash,
    match_oidc_person,
    record_sign_in,
    update_person,
)
from shared.identity.accounts import NotAllowed
from shared.identity.apitokens import generate_session
from shared.identity.ports import AuditAction, AuditOutcome, AuditQuery, NewUser
from shared.identity.principal import InvalidGrant, SegmentGrant, bootstrap_principal
from shared.identity.scopes import Role
from tests.fakes.console_store import MemoryConsoleStore
from tests.fakes.identity_store import MemoryIdentityStore

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
ISSUER = "https://idp.example.com"


@dataclass(frozen=True)
class Claims:
    subject: str
    email: str | None
    email_verified: bool = True
    issuer: str = ISSUER


@pytest.fixture
def stores() -> tuple[MemoryIdentityStore, MemoryConsoleStore]:
    identity = MemoryIdentityStore()
    return identity, MemoryConsoleStore(identity)


async def test_an_invited_address_is_linked_once_and_then_found_by_subject(
    stores: tuple[MemoryIdentityStore, MemoryConsoleStore],
) -> None:
    identity, console = stores
    ana = await identity.create_user(
        user=NewUser(email="ana@example.com", display_name="Ana", role=Role.MANAGER)
    )
    first = await match_oidc_person(
        users=identity, links=console, identity=Claims("sub-ana", "ana@example.com")
    )
    assert first.user is not None and first.linked and first.refusal is None
    again = await match_oidc_person(
        users=identity, links=console, identity=Claims("sub-ana", "other@example.com")
    )
    assert again.user is not None and again.user.user_id == ana.user_id and not again.linked
    # another subject of the same provider claiming the same address does not take the account over
    thief = await match_oidc_person(
        users=identity, links=console, identity=Claims("sub-eve", "ana@example.com")
    )
    assert thief.refusal is OidcRefusal.OTHER_IDENTITY


@pytest.mark.parametrize(
    ("claims", "refusal"),
    [
        (Claims("sub-x", "nobody@example.com"), OidcRefusal.UNKNOWN),
        (Claims("sub-x", None), OidcRefusal.UNKNOWN),
        (Claims("sub-x", "bo@example.com", email_verified=False), OidcRefusal.UNVERIFIED),
        (Claims("sub-x", "off@example.com"), OidcRefusal.DISABLED),
    ],
)
async def test_nobody_gets_an_account_by_signing_in(
    stores: tuple[MemoryIdentityStore, MemoryConsoleStore], claims: Claims, refusal: OidcRefusal
) -> None:
    identity, console = stores
    await identity.create_user(user=NewUser(email="bo@example.com", display_name="Bo", role=Role.VIEWER))
    off = await identity.create_user(
        user=NewUser(email="off@example.com", display_name="Off", role=Role.VIEWER)
    )
    identity.users[off.user_id] = replace(off, disabled=True)
    match = await match_oidc_person(users=identity, links=console, identity=claims)
    assert match.refusal is refusal
    assert all(u.oidc_subject is None for u in identity.users.values())


async def test_disabling_a_person_ends_their_sessions_and_the_last_admin_stays(
    stores: tuple[MemoryIdentityStore, MemoryConsoleStore],
) -> None:
    identity, _ = stores
    admin = await identity.create_user(user=NewUser(email="a@example.com", display_name="A", role=Role.ADMIN))
    viewer = await identity.create_user(
        user=NewUser(email="v@example.com", display_name="V", role=Role.VIEWER)
    )
    s = generate_session()
    await identity.create_session(
        session_hash=s.session_hash, user_id=viewer.user_id, created_at=T0, expires_at=T0 + timedelta(hours=8)
    )
    actor = Actor(admin.principal(), T0, "192.0.2.7")
    done = await update_person(
        users=identity,
        sessions=identity,
        audit=identity,
        actor=actor,
        user_id=viewer.user_id,
        changes=PersonChanges(disabled=True),
    )
    assert done is not None and done.disabled
    assert identity.sessions[s.session_hash].ended_at == T0
    with pytest.raises(NotAllowed, match="last enabled administrator"):
        await update_person(
            users=identity,
            sessions=identity,
            audit=identity,
            actor=actor,
            user_id=admin.user_id,
            changes=PersonChanges(role=Role.MANAGER),
        )
    (entry,) = [r.entry for r in await identity.read_audit(query=AuditQuery(action=AuditAction.USER_UPDATE))]
    assert (entry.actor, entry.target, entry.source_ip) == (
        f"person:{admin.user_id}",
        f"user:{viewer.user_id}",
        "192.0.2.7",
    )
    assert entry.details["disabled"] is True
    # the bootstrap key is refused once an admin exists
    with pytest.raises(NotAllowed, match="bootstrap"):
        await update_person(
            users=identity,
            sessions=identity,
            audit=identity,
            actor=Actor(bootstrap_principal(), T0),
            user_id=viewer.user_id,
            changes=PersonChanges(disabled=False),
        )


async def test_a_refused_sign_in_names_no_address(
    stores: tuple[MemoryIdentityStore, MemoryConsoleStore],
) -> None:
    identity, _ = stores
    await record_sign_in(
        audit=identity, at=T0, method=Method.PASSWORD, user=None, ok=False, source_ip="::1", reason="unknown"
    )
    (record,) = await identity.read_audit(query=AuditQuery())
    assert (record.entry.actor, record.entry.outcome, record.entry.target) == (
        "anonymous",
        AuditOutcome.DENIED,
        None,
    )
    assert record.entry.details == {"method": "password", "reason": "unknown"}


async def test_a_link_is_stored_hashed_and_used_once(
    stores: tuple[MemoryIdentityStore, MemoryConsoleStore],
) -> None:
    identity, console = stores
    user = await identity.create_user(user=NewUser(email="a@example.com", display_name="A", role=Role.ADMIN))
    link = await issue_sign_in_link(
        links=console, user=user, created_by="devstack", at=T0, ttl=timedelta(minutes=15)
    )
    key = link_hash(link.secret)
    assert key is not None and link.secret.encode() not in b"".join(console.links)
    assert await console.use_link(link_hash=key, at=T0 + timedelta(minutes=1)) == user.user_id
    assert await console.use_link(link_hash=key, at=T0 + timedelta(minutes=2)) is None
    assert link_hash("not/a/link") is None and link_hash("") is None


def test_grants_are_one_per_line_and_empty_means_every_segment() -> None:
    assert grants_from_lines("  \n") is None
    assert grants_from_lines("store:paris-1\nstore:lyon-2,channel:chat\n") == frozenset(
        {SegmentGrant.parse("store:paris-1"), SegmentGrant.parse("channel:chat,store:lyon-2")}
    )
    with pytest.raises(InvalidGrant):
        grants_from_lines("paris")
