"""What every ``IdentityStore`` must do, written once and run on the fake and on PostgreSQL.

Running the same scenarios on both keeps the in-memory fake honest: a unit test passing on the fake
means the same thing on the real adapter.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.identity.apitokens import generate_api_token, generate_session
from shared.identity.ports import (
    AuditAction,
    AuditEntry,
    AuditOutcome,
    AuditQuery,
    Conflict,
    IdentityStore,
    NewTokenRecord,
    NewUser,
)
from shared.identity.principal import SegmentGrant
from shared.identity.scopes import Role, Scope

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


async def users_are_unique_by_email_and_oidc_subject(store: IdentityStore) -> None:
    ana = await store.create_user(
        user=NewUser(
            email="Ana@Example.com",
            display_name="Ana",
            role=Role.VIEWER,
            segments=frozenset({SegmentGrant.parse("store:paris-1")}),
            oidc_issuer="https://idp.example.com",
            oidc_subject="sub-1",
        )
    )
    assert ana.email == "ana@example.com" and ana.user_id.startswith("u_")
    assert ana.segments == frozenset({SegmentGrant.parse("store:paris-1")})
    assert (await store.user_by_email(email=" ANA@example.com ")) == ana
    assert (await store.user_by_oidc(issuer="https://idp.example.com", subject="sub-1")) == ana
    assert await store.user_by_oidc(issuer="https://idp.example.com", subject="sub-2") is None
    with pytest.raises(Conflict):
        await store.create_user(user=NewUser(email="ana@example.com", display_name="Other", role=Role.ADMIN))
    with pytest.raises(Conflict):
        await store.create_user(
            user=NewUser(
                email="b@example.com",
                display_name="B",
                role=Role.CSM,
                oidc_issuer="https://idp.example.com",
                oidc_subject="sub-1",
            )
        )


async def users_are_updated_and_sign_ins_noted(store: IdentityStore) -> None:
    bob = await store.create_user(
        user=NewUser(email="bob@example.com", display_name="Bob", role=Role.CSM, password_hash="h1")
    )
    assert bob.segments is None and bob.accounts == frozenset() and not bob.disabled
    changed = await store.update_user(
        user=replace(
            bob, role=Role.MANAGER, segments=frozenset(), accounts=frozenset({"acc-1"}), disabled=True
        )
    )
    assert changed is not None
    assert (changed.role, changed.segments, changed.accounts, changed.disabled) == (
        Role.MANAGER,
        frozenset(),
        frozenset({"acc-1"}),
        True,
    )
    await store.note_sign_in(user_id=bob.user_id, at=T0, ok=False, locked_until=None)
    await store.note_sign_in(user_id=bob.user_id, at=T0, ok=False, locked_until=T0 + timedelta(minutes=15))
    after = await store.get_user(user_id=bob.user_id)
    assert (
        after is not None and after.failed_sign_ins == 2 and after.locked_until == T0 + timedelta(minutes=15)
    )
    await store.note_sign_in(user_id=bob.user_id, at=T0, ok=True, locked_until=None)
    after = await store.get_user(user_id=bob.user_id)
    assert after is not None and (after.failed_sign_ins, after.locked_until, after.last_sign_in_at) == (
        0,
        None,
        T0,
    )
    assert await store.set_password(user_id=bob.user_id, password_hash="h2")
    after = await store.get_user(user_id=bob.user_id)
    assert after is not None and after.password_hash == "h2"
    assert not await store.set_password(user_id="u_0000000000000000", password_hash="x")
    assert await store.update_user(user=replace(bob, user_id="u_0000000000000000")) is None
    assert [u.email for u in await store.list_users()] == ["bob@example.com"]


async def tokens_are_found_by_hash_revoked_once_and_touched_forward(store: IdentityStore) -> None:
    new = generate_api_token()
    record = NewTokenRecord(
        token_id=new.token_id,
        name="helpdesk",
        role=Role.MANAGER,
        scopes=frozenset({Scope.INTERACTIONS_WRITE, Scope.SCORES_READ}),
        created_by="person:u_1",
        expires_at=T0 + timedelta(days=30),
        segments=frozenset({SegmentGrant.parse("store:paris-1,channel:chat")}),
    )
    added = await store.add_token(token=record, token_hash=new.token_hash)
    assert (added.token_id, added.scopes, added.segments, added.last_used_at) == (
        new.token_id,
        record.scopes,
        record.segments,
        None,
    )
    assert await store.token_by_hash(token_hash=new.token_hash) == added
    assert await store.token_by_hash(token_hash=generate_api_token().token_hash) is None
    with pytest.raises(Conflict):
        await store.add_token(token=record, token_hash=generate_api_token().token_hash)

    later, earlier = T0 + timedelta(minutes=5), T0 + timedelta(minutes=1)
    await store.touch_tokens(last_used={new.token_id: later})
    await store.touch_tokens(last_used={new.token_id: earlier, "000000000000": later})
    touched = await store.get_token(token_id=new.token_id)
    assert touched is not None and touched.last_used_at == later  # a late flush never moves it back

    assert await store.revoke_token(token_id=new.token_id, by="person:u_1", at=T0)
    assert not await store.revoke_token(token_id=new.token_id, by="person:u_1", at=T0)
    revoked = await store.token_by_hash(token_hash=new.token_hash)
    assert revoked is not None and revoked.revoked_at == T0 and not revoked.active(T0)
    assert [t.token_id for t in await store.list_tokens()] == [new.token_id]


async def sessions_end_alone_or_together(store: IdentityStore) -> None:
    carl = await store.create_user(
        user=NewUser(email="carl@example.com", display_name="Carl", role=Role.ADMIN)
    )
    one, two = generate_session(), generate_session()
    for s in (one, two):
        await store.create_session(
            session_hash=s.session_hash,
            user_id=carl.user_id,
            created_at=T0,
            expires_at=T0 + timedelta(hours=8),
        )
    found = await store.session_by_hash(session_hash=one.session_hash)
    assert found is not None and found.user_id == carl.user_id and found.active(T0 + timedelta(hours=1))
    assert not found.active(T0 + timedelta(hours=8))
    await store.touch_session(session_hash=one.session_hash, at=T0 + timedelta(minutes=3))
    found = await store.session_by_hash(session_hash=one.session_hash)
    assert found is not None and found.last_seen_at == T0 + timedelta(minutes=3)
    assert await store.end_session(session_hash=one.session_hash, at=T0 + timedelta(minutes=4))
    assert not await store.end_session(session_hash=one.session_hash, at=T0 + timedelta(minutes=5))
    assert await store.end_user_sessions(user_id=carl.user_id, at=T0 + timedelta(minutes=6)) == 1
    ended = await store.session_by_hash(session_hash=two.session_hash)
    assert ended is not None and not ended.active(T0 + timedelta(minutes=7))
    assert await store.purge_sessions(older_than=T0 + timedelta(days=1)) == 2
    assert await store.session_by_hash(session_hash=one.session_hash) is None


async def audit_is_read_newest_first_and_purged_by_age(store: IdentityStore) -> None:
    entries = [
        AuditEntry(
            at=T0 + timedelta(minutes=i),
            actor="person:u_1" if i % 2 == 0 else "token:abcdefabcdef",
            action=AuditAction.TOKEN_CREATE if i < 3 else AuditAction.RULES_UPDATE,
            service="console",
            target=f"token:{i:012d}",
            source_ip="203.0.113.7" if i == 0 else None,
            details={"role": "viewer", "n": i, "first": i == 0},
        )
        for i in range(5)
    ]
    ids = [await store.append_audit(entry=e) for e in entries]
    assert ids == sorted(ids) and len(set(ids)) == 5
    newest = await store.read_audit(query=AuditQuery(limit=2))
    assert [r.audit_id for r in newest] == [ids[4], ids[3]]
    page = await store.read_audit(query=AuditQuery(before_id=ids[3], limit=10))
    assert [r.audit_id for r in page] == [ids[2], ids[1], ids[0]]
    assert page[-1].entry == entries[0]
    by_actor = await store.read_audit(query=AuditQuery(actor="token:abcdefabcdef"))
    assert [r.entry.at for r in by_actor] == [entries[3].at, entries[1].at]
    rules = await store.read_audit(
        query=AuditQuery(action=AuditAction.RULES_UPDATE, since=T0 + timedelta(minutes=4))
    )
    assert [r.audit_id for r in rules] == [ids[4]]
    assert [r.audit_id for r in await store.read_audit(query=AuditQuery(target="token:000000000002"))] == [
        ids[2]
    ]
    assert await store.purge_audit(older_than=T0 + timedelta(minutes=2)) == 2
    assert [r.audit_id for r in await store.read_audit(query=AuditQuery())] == [ids[4], ids[3], ids[2]]
    failed = AuditEntry(
        at=T0, actor="bootstrap", action=AuditAction.BOOTSTRAP_USE, service="x", outcome=AuditOutcome.DENIED
    )
    await store.append_audit(entry=failed)
    assert (await store.read_audit(query=AuditQuery(limit=1)))[0].entry == failed


SCENARIOS: list[Callable[[IdentityStore], Awaitable[None]]] = [
    users_are_unique_by_email_and_oidc_subject,
    users_are_updated_and_sign_ins_noted,
    tokens_are_found_by_hash_revoked_once_and_touched_forward,
    sessions_end_alone_or_together,
    audit_is_read_newest_first_and_purged_by_age,
]
