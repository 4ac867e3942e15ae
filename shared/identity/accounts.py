"""The identity use cases over the ports: local sign-in, people and tokens administered, audit entries.

The console's routes and the services' admin routes call these; each checks the caller's scope
itself (defence in depth behind ``require``) and writes its audit entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from shared.identity.apitokens import generate_api_token
from shared.identity.passwords import Passwords
from shared.identity.ports import (
    ApiToken,
    AuditAction,
    AuditDetail,
    AuditEntry,
    AuditLog,
    AuditOutcome,
    NewTokenRecord,
    NewUser,
    TokenStore,
    User,
    UserStore,
)
from shared.identity.principal import BOOTSTRAP_SUBJECT, Principal, SegmentGrant
from shared.identity.scopes import Role, Scope, excess_scopes

MAX_TOKEN_DAYS = 366


class NotAllowed(PermissionError):
    """The caller may not do this (missing scope, bootstrap key past its use, scopes beyond a role)."""


def audit_entry(
    principal: Principal,
    action: AuditAction,
    *,
    service: str,
    at: datetime,
    target: str | None = None,
    outcome: AuditOutcome = AuditOutcome.OK,
    source_ip: str | None = None,
    details: Mapping[str, AuditDetail] | None = None,
) -> AuditEntry:
    """An entry naming the caller by ``log_name`` (kind and opaque id: no personal data)."""
    return AuditEntry(
        at=at,
        actor=principal.log_name,
        action=action,
        service=service,
        outcome=outcome,
        target=target,
        source_ip=source_ip,
        details=dict(details or {}),
    )


# ---- local sign-in ---------------------------------------------------------------------------------
class SignInFailure(StrEnum):
    """For the audit log only: the person is told the same thing whatever the reason."""

    UNKNOWN = "unknown"
    DISABLED = "disabled"
    LOCKED = "locked"
    WRONG_PASSWORD = "wrong_password"  # noqa: S105 - a failure reason, not a secret


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    """After ``max_failures`` wrong passwords in a row the account waits ``lock_for`` before any try."""

    max_failures: int = 10
    lock_for: timedelta = timedelta(minutes=15)


@dataclass(frozen=True, slots=True)
class SignInResult:
    user: User | None
    failure: SignInFailure | None = None


async def sign_in_local(
    *,
    users: UserStore,
    passwords: Passwords,
    email: str,
    password: str,
    now: datetime,
    lockout: LockoutPolicy | None = None,
) -> SignInResult:
    """Check an email and password; every refusal costs one argon2 verification, like a success."""
    policy = lockout or LockoutPolicy()
    user = await users.user_by_email(email=email)
    if user is None:
        passwords.verify(password, None)
        return SignInResult(user=None, failure=SignInFailure.UNKNOWN)
    if user.disabled:
        passwords.verify(password, None)
        return SignInResult(user=None, failure=SignInFailure.DISABLED)
    if user.locked_until is not None and now < user.locked_until:
        passwords.verify(password, None)
        return SignInResult(user=None, failure=SignInFailure.LOCKED)
    check = passwords.verify(password, user.password_hash)
    if not check.ok:
        failures = user.failed_sign_ins + 1
        locked = now + policy.lock_for if failures >= policy.max_failures else None
        await users.note_sign_in(user_id=user.user_id, at=now, ok=False, locked_until=locked)
        return SignInResult(user=None, failure=SignInFailure.WRONG_PASSWORD)
    if check.new_hash is not None:
        await users.set_password(user_id=user.user_id, password_hash=check.new_hash)
    await users.note_sign_in(user_id=user.user_id, at=now, ok=True, locked_until=None)
    return SignInResult(user=replace(user, last_sign_in_at=now, failed_sign_ins=0, locked_until=None))


# ---- administration ----------------------------------------------------------------------------------
def _is_bootstrap(principal: Principal) -> bool:
    return principal.subject == BOOTSTRAP_SUBJECT


async def bootstrap_still_allowed(users: UserStore) -> bool:
    """The bootstrap key works only until an enabled admin person exists (then it should be removed)."""
    return not any(u.role is Role.ADMIN and not u.disabled for u in await users.list_users())


async def _authorise(by: Principal, scope: Scope, users: UserStore) -> None:
    if not by.can(scope):
        raise NotAllowed(f"{scope.value} is required")
    if _is_bootstrap(by) and not await bootstrap_still_allowed(users):
        raise NotAllowed("the bootstrap key is disabled once an admin exists; sign in as that admin")


async def create_user(
    *, users: UserStore, audit: AuditLog, by: Principal, user: NewUser, service: str, at: datetime
) -> User:
    await _authorise(by, Scope.USERS_ADMIN, users)
    created = await users.create_user(user=user)
    await audit.append_audit(
        entry=audit_entry(
            by,
            AuditAction.USER_CREATE,
            service=service,
            at=at,
            target=f"user:{created.user_id}",
            details={"role": created.role.value},
        )
    )
    return created


@dataclass(frozen=True, slots=True)
class CreatedToken:
    """``secret`` is shown to the caller once and never again."""

    secret: str
    token: ApiToken


@dataclass(frozen=True, slots=True)
class TokenRequest:
    name: str
    role: Role
    scopes: frozenset[Scope]
    expires_at: datetime | None
    segments: frozenset[SegmentGrant] | None = None
    accounts: frozenset[str] = frozenset()


async def create_api_token(
    *,
    tokens: TokenStore,
    users: UserStore,
    audit: AuditLog,
    by: Principal,
    request: TokenRequest,
    service: str,
    at: datetime,
) -> CreatedToken:
    """Issue a token; its scopes must fit its role, and it expires within ``MAX_TOKEN_DAYS`` at most."""
    await _authorise(by, Scope.TOKENS_ADMIN, users)
    excess = excess_scopes(request.role, request.scopes)
    if excess:
        raise NotAllowed(f"role {request.role.value} cannot carry {', '.join(sorted(excess))}")
    if not request.scopes:
        raise NotAllowed("a token needs at least one scope")
    latest = at + timedelta(days=MAX_TOKEN_DAYS)
    expires = request.expires_at or latest
    if expires <= at or expires > latest:
        raise NotAllowed(f"a token must expire within {MAX_TOKEN_DAYS} days")
    new = generate_api_token()
    token = await tokens.add_token(
        token=NewTokenRecord(
            token_id=new.token_id,
            name=request.name,
            role=request.role,
            scopes=request.scopes,
            created_by=by.log_name,
            expires_at=expires,
            segments=request.segments,
            accounts=request.accounts,
        ),
        token_hash=new.token_hash,
    )
    await audit.append_audit(
        entry=audit_entry(
            by,
            AuditAction.TOKEN_CREATE,
            service=service,
            at=at,
            target=f"token:{token.token_id}",
            details={"role": token.role.value, "scopes": " ".join(sorted(s.value for s in token.scopes))},
        )
    )
    return CreatedToken(secret=new.secret, token=token)


async def revoke_api_token(
    *,
    tokens: TokenStore,
    users: UserStore,
    audit: AuditLog,
    by: Principal,
    token_id: str,
    service: str,
    at: datetime,
) -> bool:
    await _authorise(by, Scope.TOKENS_ADMIN, users)
    revoked = await tokens.revoke_token(token_id=token_id, by=by.log_name, at=at)
    await audit.append_audit(
        entry=audit_entry(
            by,
            AuditAction.TOKEN_REVOKE,
            service=service,
            at=at,
            target=f"token:{token_id}",
            outcome=AuditOutcome.OK if revoked else AuditOutcome.FAILED,
        )
    )
    return revoked
