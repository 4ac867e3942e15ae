"""In-memory ``IdentityStore`` for unit tests (the real one is ``shared.identity.repository``).

It keeps the adapter's rules that tests rely on: unique emails and OpenID subjects, lower-case
emails, revocation only once, last-used times that never go back, an append-only audit log.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from shared.identity.ports import (
    ApiToken,
    AuditEntry,
    AuditQuery,
    AuditRecord,
    Conflict,
    NewTokenRecord,
    NewUser,
    Session,
    StoreUnavailable,
    User,
)


class MemoryIdentityStore:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.tokens: dict[str, tuple[ApiToken, bytes]] = {}
        self.sessions: dict[bytes, Session] = {}
        self.audit: list[AuditRecord] = []
        self.down = False
        self.lookups = 0
        self.touches: list[dict[str, datetime]] = []

    def _up(self) -> None:
        if self.down:
            raise StoreUnavailable("down")

    async def check(self) -> None:
        self._up()

    # ---- users ------------------------------------------------------------------------------------
    def _taken(self, user: NewUser | User, *, except_id: str | None = None) -> bool:
        email = user.email.strip().lower()
        for other in self.users.values():
            if other.user_id == except_id:
                continue
            if other.email == email:
                return True
            if user.oidc_issuer and (other.oidc_issuer, other.oidc_subject) == (
                user.oidc_issuer,
                user.oidc_subject,
            ):
                return True
        return False

    async def create_user(self, *, user: NewUser) -> User:
        self._up()
        if self._taken(user):
            raise Conflict("a unique value is already taken")
        now = datetime.now(UTC)
        created = User(
            user_id=f"u_{secrets.token_hex(8)}",
            email=user.email.strip().lower(),
            display_name=user.display_name,
            role=user.role,
            segments=user.segments,
            accounts=user.accounts,
            disabled=False,
            created_at=now,
            updated_at=now,
            password_hash=user.password_hash,
            oidc_issuer=user.oidc_issuer,
            oidc_subject=user.oidc_subject,
        )
        self.users[created.user_id] = created
        return created

    async def get_user(self, *, user_id: str) -> User | None:
        self._up()
        return self.users.get(user_id)

    async def user_by_email(self, *, email: str) -> User | None:
        self._up()
        wanted = email.strip().lower()
        return next((u for u in self.users.values() if u.email == wanted), None)

    async def user_by_oidc(self, *, issuer: str, subject: str) -> User | None:
        self._up()
        return next(
            (u for u in self.users.values() if (u.oidc_issuer, u.oidc_subject) == (issuer, subject)), None
        )

    async def list_users(self) -> list[User]:
        self._up()
        return sorted(self.users.values(), key=lambda u: u.email)

    async def update_user(self, *, user: User) -> User | None:
        self._up()
        current = self.users.get(user.user_id)
        if current is None:
            return None
        if self._taken(user, except_id=user.user_id):
            raise Conflict("a unique value is already taken")
        updated = replace(
            current,
            email=user.email.strip().lower(),
            display_name=user.display_name,
            role=user.role,
            segments=user.segments,
            accounts=user.accounts,
            disabled=user.disabled,
            updated_at=datetime.now(UTC),
        )
        self.users[user.user_id] = updated
        return updated

    async def set_password(self, *, user_id: str, password_hash: str | None) -> bool:
        self._up()
        if user_id not in self.users:
            return False
        self.users[user_id] = replace(self.users[user_id], password_hash=password_hash)
        return True

    async def note_sign_in(
        self, *, user_id: str, at: datetime, ok: bool, locked_until: datetime | None
    ) -> None:
        self._up()
        user = self.users.get(user_id)
        if user is None:
            return
        if ok:
            self.users[user_id] = replace(user, last_sign_in_at=at, failed_sign_ins=0, locked_until=None)
        else:
            self.users[user_id] = replace(
                user, failed_sign_ins=user.failed_sign_ins + 1, locked_until=locked_until
            )

    # ---- tokens -----------------------------------------------------------------------------------
    async def add_token(self, *, token: NewTokenRecord, token_hash: bytes) -> ApiToken:
        self._up()
        if token.token_id in self.tokens or any(h == token_hash for _, h in self.tokens.values()):
            raise Conflict("a unique value is already taken")
        record = ApiToken(
            token_id=token.token_id,
            name=token.name,
            role=token.role,
            scopes=token.scopes,
            segments=token.segments,
            accounts=token.accounts,
            created_by=token.created_by,
            created_at=datetime.now(UTC),
            expires_at=token.expires_at,
        )
        self.tokens[token.token_id] = (record, token_hash)
        return record

    async def token_by_hash(self, *, token_hash: bytes) -> ApiToken | None:
        self._up()
        self.lookups += 1
        return next((t for t, h in self.tokens.values() if h == token_hash), None)

    async def get_token(self, *, token_id: str) -> ApiToken | None:
        self._up()
        found = self.tokens.get(token_id)
        return found[0] if found else None

    async def list_tokens(self) -> list[ApiToken]:
        self._up()
        return sorted((t for t, _ in self.tokens.values()), key=lambda t: t.created_at)

    async def revoke_token(self, *, token_id: str, by: str, at: datetime) -> bool:
        self._up()
        found = self.tokens.get(token_id)
        if found is None or found[0].revoked_at is not None:
            return False
        self.tokens[token_id] = (replace(found[0], revoked_at=at), found[1])
        return True

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        self._up()
        self.touches.append(dict(last_used))
        for token_id, at in last_used.items():
            found = self.tokens.get(token_id)
            if found is None:
                continue
            token, digest = found
            latest = max(at, token.last_used_at) if token.last_used_at else at
            self.tokens[token_id] = (replace(token, last_used_at=latest), digest)

    # ---- sessions ---------------------------------------------------------------------------------
    async def create_session(
        self, *, session_hash: bytes, user_id: str, created_at: datetime, expires_at: datetime
    ) -> None:
        self._up()
        if session_hash in self.sessions or user_id not in self.users:
            raise Conflict("a unique value is already taken")
        self.sessions[session_hash] = Session(
            user_id=user_id, created_at=created_at, expires_at=expires_at, last_seen_at=created_at
        )

    async def session_by_hash(self, *, session_hash: bytes) -> Session | None:
        self._up()
        return self.sessions.get(session_hash)

    async def touch_session(self, *, session_hash: bytes, at: datetime) -> None:
        self._up()
        found = self.sessions.get(session_hash)
        if found is not None:
            latest = max(at, found.last_seen_at) if found.last_seen_at else at
            self.sessions[session_hash] = replace(found, last_seen_at=latest)

    async def end_session(self, *, session_hash: bytes, at: datetime) -> bool:
        self._up()
        found = self.sessions.get(session_hash)
        if found is None or found.ended_at is not None:
            return False
        self.sessions[session_hash] = replace(found, ended_at=at)
        return True

    async def end_user_sessions(self, *, user_id: str, at: datetime) -> int:
        self._up()
        ended = 0
        for key, session in list(self.sessions.items()):
            if session.user_id == user_id and session.ended_at is None:
                self.sessions[key] = replace(session, ended_at=at)
                ended += 1
        return ended

    async def purge_sessions(self, *, older_than: datetime) -> int:
        self._up()
        gone = [
            k
            for k, s in self.sessions.items()
            if s.expires_at < older_than or (s.ended_at is not None and s.ended_at < older_than)
        ]
        for key in gone:
            del self.sessions[key]
        return len(gone)

    # ---- audit ------------------------------------------------------------------------------------
    async def append_audit(self, *, entry: AuditEntry) -> int:
        self._up()
        audit_id = len(self.audit) + 1 if not self.audit else self.audit[-1].audit_id + 1
        self.audit.append(AuditRecord(audit_id=audit_id, entry=entry))
        return audit_id

    async def read_audit(self, *, query: AuditQuery) -> list[AuditRecord]:
        self._up()
        out = []
        for record in reversed(self.audit):
            e = record.entry
            if query.since is not None and e.at < query.since:
                continue
            if query.until is not None and e.at >= query.until:
                continue
            if query.actor is not None and e.actor != query.actor:
                continue
            if query.action is not None and e.action != query.action:
                continue
            if query.target is not None and e.target != query.target:
                continue
            if query.before_id is not None and record.audit_id >= query.before_id:
                continue
            out.append(record)
        return out[: max(1, min(query.limit, 1000))]

    async def purge_audit(self, *, older_than: datetime) -> int:
        self._up()
        before = len(self.audit)
        self.audit = [r for r in self.audit if r.entry.at >= older_than]
        return before - len(self.audit)
