"""The console's identity use cases over ports (pure): signing in and out, people changed, one-time links.

Creating people and tokens, and revoking tokens, are ``shared.identity.accounts``'s; this module adds
what only the console does. Each use case checks the caller's scope itself (defence in depth behind
the route's check) and appends its audit entry; audit entries name people by user id, never email.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from services.console.ports import ConsoleStore
from shared.identity.accounts import NotAllowed, audit_entry, bootstrap_still_allowed
from shared.identity.apitokens import hash_secret
from shared.identity.passwords import Passwords, password_problem
from shared.identity.ports import (
    AuditAction,
    AuditDetail,
    AuditEntry,
    AuditLog,
    AuditOutcome,
    SessionStore,
    User,
    UserStore,
)
from shared.identity.principal import BOOTSTRAP_SUBJECT, Principal, SegmentGrant
from shared.identity.scopes import Role, Scope

SERVICE = "console"
ANONYMOUS = "anonymous"


class Method(StrEnum):
    """How someone signed in, for the audit log."""

    PASSWORD = "password"  # noqa: S105 - a method name, not a secret
    OIDC = "oidc"
    LINK = "link"


async def record_sign_in(
    *,
    audit: AuditLog,
    at: datetime,
    method: Method,
    user: User | None,
    ok: bool,
    source_ip: str | None,
    reason: str | None = None,
) -> None:
    """``session.sign_in`` ok or denied; an unknown person is ``anonymous`` (no address is recorded)."""
    details: dict[str, AuditDetail] = {"method": method.value}
    if reason:
        details["reason"] = reason
    await audit.append_audit(
        entry=AuditEntry(
            at=at,
            actor=user.principal().log_name if user else ANONYMOUS,
            action=AuditAction.SIGN_IN,
            service=SERVICE,
            outcome=AuditOutcome.OK if ok else AuditOutcome.DENIED,
            target=f"user:{user.user_id}" if user else None,
            source_ip=source_ip,
            details=details,
        )
    )


async def record_sign_out(*, audit: AuditLog, at: datetime, user: User, source_ip: str | None) -> None:
    await audit.append_audit(
        entry=audit_entry(
            user.principal(),
            AuditAction.SIGN_OUT,
            service=SERVICE,
            at=at,
            target=f"user:{user.user_id}",
            source_ip=source_ip,
        )
    )


# ---- OpenID Connect: who is this person? -----------------------------------------------------------
class ProvidedIdentity(Protocol):
    """What the provider vouched for (``shared.identity.oidc.OidcIdentity`` is one)."""

    @property
    def issuer(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def email_verified(self) -> bool: ...


class OidcRefusal(StrEnum):
    UNKNOWN = "unknown"  # nobody invited this identity
    UNVERIFIED = "email_unverified"
    DISABLED = "disabled"
    OTHER_IDENTITY = "linked_to_another_identity"


@dataclass(frozen=True, slots=True)
class OidcMatch:
    user: User | None
    refusal: OidcRefusal | None = None
    linked: bool = False  # this sign-in attached the identity to an invited person


async def match_oidc_person(
    *, users: UserStore, links: ConsoleStore, identity: ProvidedIdentity
) -> OidcMatch:
    """(issuer, subject) first; else an invited person with that address, when the provider verified it.

    Nobody gets an account just by signing in, and an address never moves a person from one OpenID
    identity to another.
    """
    user = await users.user_by_oidc(issuer=identity.issuer, subject=identity.subject)
    if user is None:
        if not identity.email:
            return OidcMatch(user=None, refusal=OidcRefusal.UNKNOWN)
        invited = await users.user_by_email(email=identity.email)
        if invited is None:
            return OidcMatch(user=None, refusal=OidcRefusal.UNKNOWN)
        if not identity.email_verified:
            return OidcMatch(user=invited, refusal=OidcRefusal.UNVERIFIED)
        if invited.disabled:
            return OidcMatch(user=invited, refusal=OidcRefusal.DISABLED)
        if invited.oidc_issuer is not None or not await links.link_oidc(
            user_id=invited.user_id, issuer=identity.issuer, subject=identity.subject
        ):
            return OidcMatch(user=invited, refusal=OidcRefusal.OTHER_IDENTITY)
        linked = replace(invited, oidc_issuer=identity.issuer, oidc_subject=identity.subject)
        return OidcMatch(user=linked, linked=True)
    if user.disabled:
        return OidcMatch(user=user, refusal=OidcRefusal.DISABLED)
    return OidcMatch(user=user)


# ---- people changed by an admin ----------------------------------------------------------------------
async def authorise(by: Principal, scope: Scope, users: UserStore) -> None:
    """The caller holds ``scope``; the bootstrap key only until an enabled admin exists."""
    if not by.can(scope):
        raise NotAllowed(f"{scope.value} is required")
    if by.subject == BOOTSTRAP_SUBJECT and not await bootstrap_still_allowed(users):
        raise NotAllowed("the bootstrap key is disabled once an admin exists; sign in as that admin")


@dataclass(frozen=True, slots=True)
class PersonChanges:
    """What an admin may change; None leaves a field as it is (``segments`` uses ``set_segments``)."""

    display_name: str | None = None
    role: Role | None = None
    set_segments: bool = False
    segments: frozenset[SegmentGrant] | None = None
    accounts: frozenset[str] | None = None
    disabled: bool | None = None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks, from where, when: the parts every audited change needs."""

    principal: Principal
    at: datetime
    source_ip: str | None = None


async def update_person(
    *,
    users: UserStore,
    sessions: SessionStore,
    audit: AuditLog,
    actor: Actor,
    user_id: str,
    changes: PersonChanges,
) -> User | None:
    """Apply ``changes``; a disabled person's sessions end now. None when there is no such person."""
    await authorise(actor.principal, Scope.USERS_ADMIN, users)
    current = await users.get_user(user_id=user_id)
    if current is None:
        return None
    wanted = replace(
        current,
        display_name=changes.display_name if changes.display_name is not None else current.display_name,
        role=changes.role or current.role,
        segments=changes.segments if changes.set_segments else current.segments,
        accounts=changes.accounts if changes.accounts is not None else current.accounts,
        disabled=changes.disabled if changes.disabled is not None else current.disabled,
    )
    await _keep_an_admin(users, current, wanted)
    updated = await users.update_user(user=wanted)
    if updated is None:
        return None
    if updated.disabled and not current.disabled:
        await sessions.end_user_sessions(user_id=user_id, at=actor.at)
    details: Mapping[str, AuditDetail] = {
        "role": updated.role.value,
        "disabled": updated.disabled,
        "segments": len(updated.segments) if updated.segments is not None else "all",
    }
    await audit.append_audit(
        entry=audit_entry(
            actor.principal,
            AuditAction.USER_UPDATE,
            service=SERVICE,
            at=actor.at,
            target=f"user:{user_id}",
            source_ip=actor.source_ip,
            details=details,
        )
    )
    return updated


async def _keep_an_admin(users: UserStore, current: User, wanted: User) -> None:
    """Refuse the change that would leave nobody able to administer the console."""
    was_admin = current.role is Role.ADMIN and not current.disabled
    still_admin = wanted.role is Role.ADMIN and not wanted.disabled
    if not was_admin or still_admin:
        return
    others = [
        u
        for u in await users.list_users()
        if u.user_id != current.user_id and u.role is Role.ADMIN and not u.disabled
    ]
    if not others:
        raise NotAllowed("the last enabled administrator cannot be demoted or disabled")


async def set_person_password(
    *, users: UserStore, audit: AuditLog, passwords: Passwords, actor: Actor, user: User, password: str
) -> None:
    """Set a local password (policy in ``password_problem``); the audit entry says that, never what."""
    await authorise(actor.principal, Scope.USERS_ADMIN, users)
    problem = password_problem(password, email=user.email)
    if problem:
        raise ValueError(problem)
    await users.set_password(user_id=user.user_id, password_hash=passwords.hash(password))
    await audit.append_audit(
        entry=audit_entry(
            actor.principal,
            AuditAction.USER_PASSWORD,
            service=SERVICE,
            at=actor.at,
            target=f"user:{user.user_id}",
            source_ip=actor.source_ip,
        )
    )


# ---- one-time sign-in links ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IssuedLink:
    """``secret`` goes into the URL once; the store keeps its SHA-256."""

    secret: str
    expires_at: datetime


def link_hash(secret: str) -> bytes | None:
    """The stored key of a link's secret, or None for a value that cannot be one (no lookup then)."""
    if len(secret) != 43 or not all(c.isalnum() or c in "-_" for c in secret):
        return None
    return hash_secret(secret)


async def issue_sign_in_link(
    *, links: ConsoleStore, user: User, created_by: str, at: datetime, ttl: timedelta
) -> IssuedLink:
    secret = secrets.token_urlsafe(32)
    expires = at + ttl
    await links.add_link(
        link_hash=hash_secret(secret),
        user_id=user.user_id,
        created_by=created_by,
        created_at=at,
        expires_at=expires,
    )
    return IssuedLink(secret=secret, expires_at=expires)


def parse_lines(text: str) -> list[str]:
    """A textarea's non-empty lines, trimmed (grants and accounts are entered one per line)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def grants_from_lines(text: str) -> frozenset[SegmentGrant] | None:
    """Empty = every segment (None); otherwise each line is a grant (``InvalidGrant`` names the bad one)."""
    lines = parse_lines(text)
    return frozenset(SegmentGrant.parse(line) for line in lines) if lines else None
