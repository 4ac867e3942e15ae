"""Passwords, local sign-in with lockout, source keys and identity proofs, tokens and people administered."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.identity.accounts import (
    MAX_TOKEN_DAYS,
    LockoutPolicy,
    NotAllowed,
    SignInFailure,
    TokenRequest,
    create_api_token,
    create_user,
    revoke_api_token,
    sign_in_local,
)
from shared.identity.apitokens import hash_secret
from shared.identity.passwords import Passwords, password_problem
from shared.identity.ports import AuditAction, AuditQuery, NewUser
from shared.identity.principal import Principal, PrincipalKind, bootstrap_principal
from shared.identity.scopes import ROLE_SCOPES, Role, Scope
from shared.identity.sourcekeys import (
    ProofCheck,
    SourceKeyKind,
    derive_identity_secret,
    generate_source_key,
    parse_source_key,
    sign_customer,
    verify_customer_proof,
)
from tests.fakes.identity_store import MemoryIdentityStore

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
# Small argon2 parameters keep the tests fast; the production defaults are argon2-cffi's recommended ones.
FAST = Passwords(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery staple"


# ---- passwords ----------------------------------------------------------------------------------------
def test_hash_verify_and_needs_rehash() -> None:
    stored = FAST.hash(PASSWORD)
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert FAST.hash(PASSWORD) != stored  # salted
    assert FAST.verify(PASSWORD, stored).ok and FAST.verify(PASSWORD, stored).new_hash is None
    assert not FAST.verify(PASSWORD + "!", stored).ok
    stronger = Passwords(time_cost=2, memory_cost=2048, parallelism=1)
    upgraded = stronger.verify(PASSWORD, stored)
    assert upgraded.ok and upgraded.new_hash is not None and "m=2048,t=2" in upgraded.new_hash
    assert not stronger.verify(PASSWORD + "!", stored).new_hash  # never a new hash for a wrong password


@pytest.mark.parametrize("stored", [None, "", "plain-text", "$2b$12$notabcrypthashatall"])
def test_absent_or_unknown_hashes_never_verify(stored: str | None) -> None:
    assert not FAST.verify(PASSWORD, stored).ok


@pytest.mark.parametrize(
    ("password", "email", "problem"),
    [
        ("short", None, "at least 12"),
        ("x" * 1025, None, "at most 1024"),
        ("twelve chars\x00", None, "NUL"),
        ("ana@example.com", "Ana@Example.com", "email address"),
        (PASSWORD, "ana@example.com", None),
    ],
)
def test_password_policy(password: str, email: str | None, problem: str | None) -> None:
    found = password_problem(password, email=email)
    assert (found is None) if problem is None else (found is not None and problem in found)


# ---- local sign-in ------------------------------------------------------------------------------------
async def _with_user(*, disabled: bool = False) -> tuple[MemoryIdentityStore, str]:
    store = MemoryIdentityStore()
    user = await store.create_user(
        user=NewUser(
            email="ana@example.com", display_name="Ana", role=Role.CSM, password_hash=FAST.hash(PASSWORD)
        )
    )
    if disabled:
        await store.update_user(user=replace(user, disabled=True))
    return store, user.user_id


@pytest.mark.parametrize(
    ("email", "password", "disabled", "failure"),
    [
        ("Ana@Example.com", PASSWORD, False, None),
        ("ana@example.com", "wrong password!", False, SignInFailure.WRONG_PASSWORD),
        ("nobody@example.com", PASSWORD, False, SignInFailure.UNKNOWN),
        ("ana@example.com", PASSWORD, True, SignInFailure.DISABLED),
    ],
)
async def test_sign_in(email: str, password: str, disabled: bool, failure: SignInFailure | None) -> None:
    store, user_id = await _with_user(disabled=disabled)
    result = await sign_in_local(users=store, passwords=FAST, email=email, password=password, now=NOW)
    assert result.failure == failure
    assert (result.user is not None) is (failure is None)
    if failure is None:
        assert result.user is not None and result.user.user_id == user_id
        assert store.users[user_id].last_sign_in_at == NOW


async def test_repeated_failures_lock_the_account_then_it_opens_again() -> None:
    store, user_id = await _with_user()
    policy = LockoutPolicy(max_failures=3, lock_for=timedelta(minutes=15))
    for _ in range(3):
        result = await sign_in_local(
            users=store, passwords=FAST, email="ana@example.com", password="nope" * 4, now=NOW, lockout=policy
        )
        assert result.failure is SignInFailure.WRONG_PASSWORD
    assert store.users[user_id].locked_until == NOW + timedelta(minutes=15)
    locked = await sign_in_local(
        users=store,
        passwords=FAST,
        email="ana@example.com",
        password=PASSWORD,
        now=NOW + timedelta(minutes=14),
        lockout=policy,
    )
    assert locked.failure is SignInFailure.LOCKED  # even the right password waits
    later = await sign_in_local(
        users=store,
        passwords=FAST,
        email="ana@example.com",
        password=PASSWORD,
        now=NOW + timedelta(minutes=15),
        lockout=policy,
    )
    assert later.failure is None and store.users[user_id].failed_sign_ins == 0


async def test_an_outdated_hash_is_replaced_on_sign_in() -> None:
    store, user_id = await _with_user()
    stronger = Passwords(time_cost=2, memory_cost=2048, parallelism=1)
    assert (
        await sign_in_local(
            users=store, passwords=stronger, email="ana@example.com", password=PASSWORD, now=NOW
        )
    ).user
    stored = store.users[user_id].password_hash
    assert stored is not None and "m=2048,t=2" in stored


# ---- tokens and people administered -----------------------------------------------------------------
ADMIN = Principal(
    subject="u_admin", kind=PrincipalKind.PERSON, role=Role.ADMIN, scopes=ROLE_SCOPES[Role.ADMIN]
)


def _request(
    role: Role = Role.VIEWER, scopes: set[Scope] | None = None, expires_at: datetime | None = None
) -> TokenRequest:
    return TokenRequest(
        name="bi export", role=role, scopes=frozenset(scopes or {Scope.SCORES_READ}), expires_at=expires_at
    )


async def test_a_token_is_shown_once_stored_hashed_and_audited() -> None:
    store = MemoryIdentityStore()
    created = await create_api_token(
        tokens=store, users=store, audit=store, by=ADMIN, request=_request(), service="console", at=NOW
    )
    assert created.token.expires_at == NOW + timedelta(days=MAX_TOKEN_DAYS)
    (record, digest) = store.tokens[created.token.token_id]
    assert digest == hash_secret(created.secret) and created.secret not in repr(record)
    (entry,) = await store.read_audit(query=AuditQuery())
    assert (entry.entry.action, entry.entry.actor, entry.entry.target) == (
        AuditAction.TOKEN_CREATE,
        "person:u_admin",
        f"token:{created.token.token_id}",
    )
    assert await revoke_api_token(
        tokens=store,
        users=store,
        audit=store,
        by=ADMIN,
        token_id=created.token.token_id,
        service="console",
        at=NOW,
    )
    assert not await revoke_api_token(
        tokens=store,
        users=store,
        audit=store,
        by=ADMIN,
        token_id=created.token.token_id,
        service="console",
        at=NOW,
    )
    assert [r.entry.outcome.value for r in await store.read_audit(query=AuditQuery())] == [
        "failed",
        "ok",
        "ok",
    ]


@pytest.mark.parametrize(
    ("by", "request_", "message"),
    [
        (
            Principal(
                subject="u_m", kind=PrincipalKind.PERSON, role=Role.MANAGER, scopes=ROLE_SCOPES[Role.MANAGER]
            ),
            _request(),
            "tokens:admin",
        ),
        (ADMIN, _request(Role.VIEWER, {Scope.RULES_ADMIN}), "cannot carry rules:admin"),
        (
            ADMIN,
            TokenRequest(name="x", role=Role.VIEWER, scopes=frozenset(), expires_at=None),
            "at least one scope",
        ),
        (ADMIN, _request(expires_at=NOW), "expire within"),
        (ADMIN, _request(expires_at=NOW + timedelta(days=MAX_TOKEN_DAYS + 1)), "expire within"),
    ],
)
async def test_token_requests_that_are_refused(by: Principal, request_: TokenRequest, message: str) -> None:
    store = MemoryIdentityStore()
    with pytest.raises(NotAllowed, match=message):
        await create_api_token(
            tokens=store, users=store, audit=store, by=by, request=request_, service="console", at=NOW
        )
    assert store.tokens == {}


async def test_the_bootstrap_key_creates_the_first_admin_and_then_stops() -> None:
    store = MemoryIdentityStore()
    boot = bootstrap_principal()
    ingest = _request(Role.VIEWER, {Scope.RATINGS_WRITE})
    assert (
        await create_api_token(
            tokens=store, users=store, audit=store, by=boot, request=ingest, service="console", at=NOW
        )
    ).secret
    admin = await create_user(
        users=store,
        audit=store,
        by=boot,
        user=NewUser(email="root@example.com", display_name="Root", role=Role.ADMIN),
        service="console",
        at=NOW,
    )
    with pytest.raises(NotAllowed, match="bootstrap key is disabled"):
        await create_api_token(
            tokens=store, users=store, audit=store, by=boot, request=ingest, service="console", at=NOW
        )
    with pytest.raises(NotAllowed, match="bootstrap key is disabled"):
        await create_user(
            users=store,
            audit=store,
            by=boot,
            user=NewUser(email="x@example.com", display_name="X", role=Role.ADMIN),
            service="console",
            at=NOW,
        )
    assert [r.entry.actor for r in await store.read_audit(query=AuditQuery())] == [
        "token:bootstrap",
        "token:bootstrap",
    ]
    assert admin.principal().can(Scope.USERS_ADMIN)


# ---- source keys and identity proofs -------------------------------------------------------------------
PLATFORM_KEY = "p" * 4 + "Zx9-Cv8_Bn7Mm6Ll5Kk4Jj3Hh2Gg1Ff0"


def test_source_keys_say_their_kind_and_legacy_keys_are_publishable() -> None:
    for kind in SourceKeyKind:
        new = generate_source_key(kind)
        assert new.secret.startswith(f"{kind.value}_{new.key_id}_") and new.key_hash == hash_secret(
            new.secret
        )
        ref = parse_source_key(new.secret)
        assert ref is not None and (ref.kind, ref.key_id, ref.legacy) == (kind, new.key_id, False)
    legacy = parse_source_key("csk_0123456789_" + "a" * 32)
    assert legacy is not None and (legacy.kind, legacy.legacy) == (SourceKeyKind.PUBLISHABLE, True)
    for bad in (
        "",
        "pk_",
        "pk_0123456789_short",
        "xk_0123456789_" + "a" * 32,
        "csat_0123456789ab_" + "a" * 43,
    ):
        assert parse_source_key(bad) is None


def _proof_case(proof_for: str, expires_in: int, secrets_used: list[str]) -> ProofCheck:
    secret = derive_identity_secret(platform_key=PLATFORM_KEY, source_id="shop", version=1)
    now = int(NOW.timestamp())
    proof = sign_customer(identity_secret=secret, customer_id=proof_for, expires_at=now + expires_in)
    return verify_customer_proof(
        identity_secrets=secrets_used or [secret], customer_id="cus_1", proof=proof, now=now
    )


@pytest.mark.parametrize(
    ("proof_for", "expires_in", "other_secret", "check"),
    [
        ("cus_1", 3600, False, ProofCheck.VALID),
        ("cus_2", 3600, False, ProofCheck.WRONG),  # a proof for another customer
        ("cus_1", 3600, True, ProofCheck.WRONG),  # signed with another source's secret
        ("cus_1", 0, False, ProofCheck.EXPIRED),
        ("cus_1", 8 * 24 * 3600, False, ProofCheck.TOO_LONG),
    ],
)
def test_customer_identity_proofs(
    proof_for: str, expires_in: int, other_secret: bool, check: ProofCheck
) -> None:
    others = (
        [derive_identity_secret(platform_key=PLATFORM_KEY, source_id="other-shop", version=1)]
        if other_secret
        else []
    )
    assert _proof_case(proof_for, expires_in, others) is check


def test_identity_secrets_rotate_by_version_and_malformed_proofs_are_refused() -> None:
    v1 = derive_identity_secret(platform_key=PLATFORM_KEY, source_id="shop", version=1)
    v2 = derive_identity_secret(platform_key=PLATFORM_KEY, source_id="shop", version=2)
    assert (
        v1 != v2
        and v1.startswith("sis_")
        and v1 == derive_identity_secret(platform_key=PLATFORM_KEY, source_id="shop", version=1)
    )
    now = int(NOW.timestamp())
    old = sign_customer(identity_secret=v1, customer_id="cus_1", expires_at=now + 60)
    assert (
        verify_customer_proof(identity_secrets=[v2, v1], customer_id="cus_1", proof=old, now=now)
        is ProofCheck.VALID
    )
    assert (
        verify_customer_proof(identity_secrets=[v2], customer_id="cus_1", proof=old, now=now)
        is ProofCheck.WRONG
    )
    for bad in ("", "v1", "v2.1.abc", old.upper(), old + "0"):
        assert (
            verify_customer_proof(identity_secrets=[v1], customer_id="cus_1", proof=bad, now=now)
            is ProofCheck.MALFORMED
        )
    assert (
        verify_customer_proof(identity_secrets=[v1], customer_id="", proof=old, now=now)
        is ProofCheck.MALFORMED
    )
