"""In-memory ``ConsoleStore`` for unit tests (the real one is ``services.console.repository``).

It shares the people of a ``MemoryIdentityStore`` (OpenID linking writes to them) and keeps the
adapter's rules: a link is used once, never after it expired, and linking never replaces an identity.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from services.console.ports import ErasureDone, SignInLink
from shared.identity.ports import Conflict
from tests.fakes.identity_store import MemoryIdentityStore


class MemoryConsoleStore:
    def __init__(self, identity: MemoryIdentityStore) -> None:
        self.identity = identity
        self.erasures: dict[str, list[ErasureDone]] = {}  # what the services recorded, by erasure id
        self.links: dict[bytes, SignInLink] = {}

    async def erasure_status(self, *, erasure_id: str) -> list[ErasureDone]:
        return sorted(self.erasures.get(erasure_id, []), key=lambda d: d.service)

    async def check(self) -> None:
        self.identity._up()

    async def add_link(
        self, *, link_hash: bytes, user_id: str, created_by: str, created_at: datetime, expires_at: datetime
    ) -> None:
        self.identity._up()
        if link_hash in self.links or user_id not in self.identity.users:
            raise Conflict("a unique value is already taken")
        self.links[link_hash] = SignInLink(
            user_id=user_id, created_by=created_by, created_at=created_at, expires_at=expires_at
        )

    async def link_by_hash(self, *, link_hash: bytes) -> SignInLink | None:
        self.identity._up()
        return self.links.get(link_hash)

    async def use_link(self, *, link_hash: bytes, at: datetime) -> str | None:
        self.identity._up()
        link = self.links.get(link_hash)
        if link is None or not link.usable(at):
            return None
        self.links[link_hash] = replace(link, used_at=at)
        return link.user_id

    async def purge_links(self, *, older_than: datetime) -> int:
        self.identity._up()
        gone = [k for k, link in self.links.items() if link.expires_at < older_than]
        for key in gone:
            del self.links[key]
        return len(gone)

    async def link_oidc(self, *, user_id: str, issuer: str, subject: str) -> bool:
        self.identity._up()
        user = self.identity.users.get(user_id)
        if user is None or user.oidc_issuer is not None:
            return False
        self.identity.users[user_id] = replace(user, oidc_issuer=issuer, oidc_subject=subject)
        return True
