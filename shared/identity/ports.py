"""What identity keeps (people, tokens, sessions, audit log), as small ports and plain records.

``shared.identity.repository.PgIdentityStore`` is the PostgreSQL adapter (schema ``identity``);
``tests/fakes/identity_store.py`` the in-memory one. Services that only verify tokens depend on
``TokenLookup``; services that record what admins did depend on ``AuditLog``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from shared.identity.principal import Principal, PrincipalKind, SegmentGrant
from shared.identity.scopes import ROLE_SCOPES, Role, Scope, grantable_scopes


class StoreUnavailable(RuntimeError):
    """The database did not answer in time; the caller answers 503, never a guess."""


class Conflict(ValueError):
    """A unique value is taken (an email address, an OpenID subject, a token id)."""


@dataclass(frozen=True, slots=True)
class NewUser:
    email: str
    display_name: str
    role: Role
    segments: frozenset[SegmentGrant] | None = None
    accounts: frozenset[str] = field(default_factory=frozenset)
    password_hash: str | None = None
    oidc_issuer: str | None = None
    oidc_subject: str | None = None


@dataclass(frozen=True, slots=True)
class User:
    """A person who signs in. ``email`` is lower-case; it doubles as a CSM's owner address."""

    user_id: str
    email: str
    display_name: str
    role: Role
    segments: frozenset[SegmentGrant] | None
    accounts: frozenset[str]
    disabled: bool
    created_at: datetime
    updated_at: datetime
    last_sign_in_at: datetime | None = None
    password_hash: str | None = None
    oidc_issuer: str | None = None
    oidc_subject: str | None = None
    failed_sign_ins: int = 0
    locked_until: datetime | None = None

    def principal(self) -> Principal:
        return Principal(
            subject=self.user_id,
            kind=PrincipalKind.PERSON,
            role=self.role,
            scopes=ROLE_SCOPES[self.role],
            segments=self.segments,
            accounts=self.accounts,
            owner_email=self.email if self.role is Role.CSM else None,
        )


@dataclass(frozen=True, slots=True)
class NewTokenRecord:
    token_id: str
    name: str
    role: Role
    scopes: frozenset[Scope]
    created_by: str
    expires_at: datetime | None
    segments: frozenset[SegmentGrant] | None = None
    accounts: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A machine token's record (never its secret). Its scopes never exceed what its role may grant."""

    token_id: str
    name: str
    role: Role
    scopes: frozenset[Scope]
    segments: frozenset[SegmentGrant] | None
    accounts: frozenset[str]
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def principal(self) -> Principal:
        return Principal(
            subject=self.token_id,
            kind=PrincipalKind.TOKEN,
            role=self.role,
            scopes=self.scopes & grantable_scopes(self.role),
            segments=self.segments,
            accounts=self.accounts,
        )


@dataclass(frozen=True, slots=True)
class Session:
    """A console sign-in; the cookie holds the secret, the store its SHA-256."""

    user_id: str
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime | None = None
    ended_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.ended_at is None and now < self.expires_at


class AuditOutcome(StrEnum):
    OK = "ok"
    DENIED = "denied"
    FAILED = "failed"


class AuditAction(StrEnum):
    """What the audit log records; a new kind of event is added here first."""

    SIGN_IN = "session.sign_in"
    SIGN_OUT = "session.sign_out"
    USER_CREATE = "user.create"
    USER_UPDATE = "user.update"
    USER_PASSWORD = "user.password"  # noqa: S105 - an action name, not a secret
    TOKEN_CREATE = "token.create"  # noqa: S105 - an action name, not a secret
    TOKEN_REVOKE = "token.revoke"  # noqa: S105 - an action name, not a secret
    BOOTSTRAP_USE = "bootstrap.use"
    SOURCE_CREATE = "source.create"
    SOURCE_UPDATE = "source.update"
    SOURCE_DELETE = "source.delete"
    SOURCE_KEY_CREATE = "source_key.create"
    SOURCE_KEY_REVOKE = "source_key.revoke"
    RULES_UPDATE = "rules.update"
    RULE_DELETE = "rules.delete"
    SURVEYS_UPDATE = "surveys.update"
    SURVEY_DELETE = "surveys.delete"
    SURVEY_SEND = "survey.send"
    ALERT_ACK = "alert.ack"
    ALERT_RESOLVE = "alert.resolve"
    ALERT_ASSIGN = "alert.assign"
    CUSTOMER_UPDATE = "customer.update"
    SUPPRESSION_ADD = "suppression.add"
    SUPPRESSION_REMOVE = "suppression.remove"
    GDPR_EXPORT = "gdpr.export"
    GDPR_ERASE = "gdpr.erase"
    AUDIT_READ = "audit.read"
    AUDIT_PURGE = "audit.purge"


#: Detail values are short scalars: ids, counts, flags. Free text (and so customers' data) does not fit.
AuditDetail = str | int | bool | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who (a principal's ``log_name``), did what, to what, from where, with which outcome.

    ``target`` names an object by kind and opaque id (``token:0a1b2c3d4e5f``, ``rule:vip-alert``);
    customers are named by their keyed hash (``customer#<hex>``), never by id, email or phone.
    """

    at: datetime
    actor: str
    action: AuditAction
    service: str
    outcome: AuditOutcome = AuditOutcome.OK
    target: str | None = None
    source_ip: str | None = None
    details: Mapping[str, AuditDetail] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    audit_id: int
    entry: AuditEntry


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Newest first; ``before_id`` pages backwards from the last id seen."""

    since: datetime | None = None
    until: datetime | None = None
    actor: str | None = None
    action: AuditAction | None = None
    target: str | None = None
    before_id: int | None = None
    limit: int = 100


class TokenLookup(Protocol):
    """What verifying an API token needs: one lookup, and a batched note of when tokens were used."""

    async def token_by_hash(self, *, token_hash: bytes) -> ApiToken | None: ...
    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None: ...


class AuditLog(Protocol):
    async def append_audit(self, *, entry: AuditEntry) -> int: ...


class UserStore(Protocol):
    async def create_user(self, *, user: NewUser) -> User: ...
    async def get_user(self, *, user_id: str) -> User | None: ...
    async def user_by_email(self, *, email: str) -> User | None: ...
    async def user_by_oidc(self, *, issuer: str, subject: str) -> User | None: ...
    async def list_users(self) -> list[User]: ...
    async def update_user(self, *, user: User) -> User | None: ...
    async def set_password(self, *, user_id: str, password_hash: str | None) -> bool: ...
    async def note_sign_in(
        self, *, user_id: str, at: datetime, ok: bool, locked_until: datetime | None
    ) -> None: ...


class TokenStore(TokenLookup, Protocol):
    async def add_token(self, *, token: NewTokenRecord, token_hash: bytes) -> ApiToken: ...
    async def get_token(self, *, token_id: str) -> ApiToken | None: ...
    async def list_tokens(self) -> list[ApiToken]: ...
    async def revoke_token(self, *, token_id: str, by: str, at: datetime) -> bool: ...


class SessionStore(Protocol):
    async def create_session(
        self, *, session_hash: bytes, user_id: str, created_at: datetime, expires_at: datetime
    ) -> None: ...
    async def session_by_hash(self, *, session_hash: bytes) -> Session | None: ...
    async def touch_session(self, *, session_hash: bytes, at: datetime) -> None: ...
    async def end_session(self, *, session_hash: bytes, at: datetime) -> bool: ...
    async def end_user_sessions(self, *, user_id: str, at: datetime) -> int: ...
    async def purge_sessions(self, *, older_than: datetime) -> int: ...


class AuditStore(AuditLog, Protocol):
    async def read_audit(self, *, query: AuditQuery) -> list[AuditRecord]: ...
    async def purge_audit(self, *, older_than: datetime) -> int: ...


class IdentityStore(UserStore, TokenStore, SessionStore, AuditStore, Protocol):
    """Everything the console's admin side uses."""

    async def check(self) -> None: ...
