"""In-memory ``CollectorStore`` (``services.collector.ports``) for tests without PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.collector.ports import (
    Claim,
    ClaimState,
    InAppSurvey,
    KeyInfo,
    Principal,
    SmsSurvey,
    Source,
    SourceExists,
    Standing,
    StoreUnavailable,
)
from services.collector.sms import pick_sms_survey
from shared.events import KeyKind


@dataclass
class _Idem:
    source_id: str
    fingerprint: bytes
    state: str
    claimed_at: datetime
    revision: int = 0
    first_accepted_at: datetime | None = None


class MemoryStore:
    def __init__(self) -> None:
        self.sources: dict[str, Source] = {}
        self.keys: dict[str, tuple[KeyInfo, bytes]] = {}
        self.idem: dict[str, _Idem] = {}
        self.sms: list[tuple[SmsSurvey, bytes, datetime]] = []
        self.inapp: list[InAppSurvey] = []
        self.down = False
        self.lookups = 0

    def _up(self) -> None:
        if self.down:
            raise StoreUnavailable("down")

    async def check(self) -> None:
        self._up()

    async def principal_for_key(self, *, key_hash: bytes, now: datetime) -> Principal | None:
        self._up()
        self.lookups += 1
        for info, digest in self.keys.values():
            if digest != key_hash or info.revoked_at is not None:
                continue
            if info.expires_at is not None and info.expires_at <= now:
                continue
            return Principal(source=self.sources[info.source_id], key_id=info.key_id, kind=info.kind)
        return None

    async def all_origins(self) -> set[str]:
        self._up()
        return {o for s in self.sources.values() if not s.disabled for o in s.allowed_origins}

    async def create_source(self, *, source: Source) -> Source:
        self._up()
        if source.source_id in self.sources:
            raise SourceExists(source.source_id)
        created = replace(source, created_at=datetime.now(UTC))
        self.sources[source.source_id] = created
        return created

    async def update_source(self, *, source_id: str, changes: dict[str, Any]) -> Source | None:
        self._up()
        if source_id not in self.sources:
            return None
        if "allowed_origins" in changes:
            changes = {**changes, "allowed_origins": tuple(changes["allowed_origins"])}
        self.sources[source_id] = replace(self.sources[source_id], **changes)
        return self.sources[source_id]

    async def get_source(self, *, source_id: str) -> Source | None:
        self._up()
        return self.sources.get(source_id)

    async def list_sources(self) -> list[Source]:
        self._up()
        return sorted(self.sources.values(), key=lambda s: s.source_id)

    async def delete_source(self, *, source_id: str) -> bool:
        self._up()
        if self.sources.pop(source_id, None) is None:
            return False
        self.keys = {k: v for k, v in self.keys.items() if v[0].source_id != source_id}
        return True

    async def add_key(
        self,
        *,
        source_id: str,
        key_id: str,
        key_hash: bytes,
        kind: KeyKind,
        expire_others_at: datetime | None,
    ) -> KeyInfo:
        self._up()
        if expire_others_at is not None:
            for kid, (info, digest) in list(self.keys.items()):
                if info.source_id == source_id and info.kind is kind and info.revoked_at is None:
                    self.keys[kid] = (replace(info, expires_at=expire_others_at), digest)
        info = KeyInfo(key_id=key_id, source_id=source_id, created_at=datetime.now(UTC), kind=kind)
        self.keys[key_id] = (info, key_hash)
        return info

    async def list_keys(self, *, source_id: str) -> list[KeyInfo]:
        self._up()
        return [info for info, _ in self.keys.values() if info.source_id == source_id]

    async def revoke_key(self, *, source_id: str, key_id: str) -> bool:
        self._up()
        found = self.keys.get(key_id)
        if found is None or found[0].source_id != source_id:
            return False
        self.keys[key_id] = (replace(found[0], revoked_at=datetime.now(UTC)), found[1])
        return True

    async def rotate_identity(self, *, source_id: str, now: datetime) -> Source | None:
        self._up()
        found = self.sources.get(source_id)
        if found is None:
            return None
        self.sources[source_id] = replace(
            found, identity_version=found.identity_version + 1, identity_rotated_at=now
        )
        return self.sources[source_id]

    async def claim(
        self, *, claims: Sequence[Claim], lease_s: float, confirm: Sequence[str] = ()
    ) -> dict[str, ClaimState]:
        self._up()
        # PostgreSQL refuses or ignores a second change of one row in one statement: so does the fake.
        assert not set(confirm) & {c.rating_id for c in claims}, "an id both claimed and confirmed"
        if confirm:
            await self.confirm(rating_ids=confirm)
        now = datetime.now(UTC)
        out: dict[str, ClaimState] = {}
        for c in claims:
            row = self.idem.get(c.rating_id)
            same = row is not None and row.fingerprint == c.fingerprint and row.source_id == c.source_id
            if row is None:
                self.idem[c.rating_id] = _Idem(c.source_id, c.fingerprint, "pending", now)
                out[c.rating_id] = ClaimState.CLAIMED
            elif not same:
                out[c.rating_id] = ClaimState.CONFLICT
            elif row.state == "accepted":
                out[c.rating_id] = ClaimState.REPLAY
            elif row.claimed_at < now - timedelta(seconds=lease_s):
                row.claimed_at = now
                out[c.rating_id] = ClaimState.CLAIMED
            else:
                out[c.rating_id] = ClaimState.PENDING
        return out

    async def confirm(self, *, rating_ids: Sequence[str]) -> None:
        self._up()
        for rid in rating_ids:
            row = self.idem[rid]
            row.state = "accepted"
            row.first_accepted_at = row.first_accepted_at or datetime.now(UTC)

    async def standing(self, *, rating_id: str) -> Standing | None:
        self._up()
        row = self.idem.get(rating_id)
        if row is None:
            return None
        return Standing(
            row.source_id, row.fingerprint, row.state, row.revision, row.claimed_at, row.first_accepted_at
        )

    async def revise(
        self, *, rating_id: str, source_id: str, from_revision: int, fingerprint: bytes, lease_s: float
    ) -> bool:
        self._up()
        now = datetime.now(UTC)
        row = self.idem.get(rating_id)
        if row is None or row.source_id != source_id or row.revision != from_revision:
            return False
        if row.state != "accepted" and row.claimed_at >= now - timedelta(seconds=lease_s):
            return False
        row.fingerprint, row.revision = fingerprint, from_revision + 1
        row.state, row.claimed_at = "pending", now
        return True

    async def release(self, *, rating_ids: Sequence[str]) -> None:
        self._up()
        for rid in rating_ids:
            if rid in self.idem and self.idem[rid].state == "pending":
                del self.idem[rid]

    async def purge(self, *, older_than: datetime) -> int:
        self._up()
        old = [rid for rid, row in self.idem.items() if row.claimed_at < older_than]
        for rid in old:
            del self.idem[rid]
        return len(old)

    async def add_sms_survey(self, *, survey: SmsSurvey, phone_hash: bytes) -> None:
        self._up()
        if any(s.request_id == survey.request_id for s, _d, _c in self.sms):
            return
        self.sms.append((survey, phone_hash, datetime.now(UTC)))

    async def open_sms_survey(self, *, phone_hashes: Sequence[bytes], now: datetime) -> SmsSurvey | None:
        self._up()
        sent = sorted(
            ((created, s) for s, digest, created in self.sms if digest in phone_hashes),
            key=lambda x: x[0],
            reverse=True,
        )
        return pick_sms_survey([s for _c, s in sent], now=now)

    async def add_inapp_survey(self, *, survey: InAppSurvey) -> None:
        self._up()
        if all(s.request_id != survey.request_id for s in self.inapp):
            self.inapp.append(survey)

    async def inapp_surveys(self, *, customer_id: str, now: datetime) -> list[InAppSurvey]:
        self._up()
        return [s for s in reversed(self.inapp) if s.customer_id == customer_id and s.expires_at > now][:20]

    async def mark_sms_answered(self, *, request_id: str, rating_id: str, at: datetime) -> None:
        self._up()
        self.sms = [
            (replace(s, answered_at=at) if s.request_id == request_id and s.answered_at is None else s, d, c)
            for s, d, c in self.sms
        ]
