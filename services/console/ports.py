"""What the console's routes and use cases depend on: the identity store (shared) and its own links store.

``services.console.repository`` implements ``ConsoleStore`` on PostgreSQL (schema ``console``),
``shared.identity.repository.PgIdentityStore`` implements ``IdentityStore``; ``tests/fakes/console_store.py``
holds the in-memory ``ConsoleStore``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from shared.envelope import OutgoingRecord
from shared.identity.ports import IdentityStore

__all__ = ["ConsoleStore", "IdentityStore", "OidcLinks", "SignInLink", "SignInLinks"]


@dataclass(frozen=True, slots=True)
class SignInLink:
    """A one-time sign-in link's record; the secret is in the URL only, the store has its SHA-256."""

    user_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


class SignInLinks(Protocol):
    async def add_link(
        self, *, link_hash: bytes, user_id: str, created_by: str, created_at: datetime, expires_at: datetime
    ) -> None: ...

    async def link_by_hash(self, *, link_hash: bytes) -> SignInLink | None:
        """Look without using it (the GET that shows the confirm button)."""
        ...

    async def use_link(self, *, link_hash: bytes, at: datetime) -> str | None:
        """Mark it used if still usable, atomically; the user id when this call was the one that used it."""
        ...

    async def purge_links(self, *, older_than: datetime) -> int: ...


class OidcLinks(Protocol):
    async def link_oidc(self, *, user_id: str, issuer: str, subject: str) -> bool:
        """Attach an OpenID identity to a person who has none yet; False when they already have one."""
        ...


@dataclass(frozen=True, slots=True)
class ErasureDone:
    """One service's record of one erasure (``ops.erasures``): when, and rows changed per table."""

    service: str
    erased_at: datetime
    removed: dict[str, int]


class ErasureLog(Protocol):
    async def erasure_status(self, *, erasure_id: str) -> list[ErasureDone]:
        """What each service recorded for this erasure so far (none: not reached any service yet)."""
        ...


class EventSink(Protocol):
    """Publishes one event and returns once the broker's in-sync replicas have it (acks=all)."""

    async def publish(self, record: OutgoingRecord) -> None: ...


class EventsUnavailable(Exception):
    """The broker could not take the event: nothing was published, the caller may try again."""


class ConsoleStore(SignInLinks, OidcLinks, ErasureLog, Protocol):
    """The console's own adapter: one-time links, and linking invited people to their OpenID identity."""

    async def check(self) -> None: ...
