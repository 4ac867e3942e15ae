"""The rule set in force, versioned in PostgreSQL so every replica follows the same rules.

The YAML file seeds version 1. A changed file (new deploy) becomes a new version as long as nobody
has edited the rules through the admin API since; after an API edit the database wins and a changed
file is reported in the log. Readers compare the newest version number (one indexed query) and
reload only when it moved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog

from services.actions.ports import RuleSetStore
from services.actions.rules import RuleFileError, RuleSet, parse_rules
from shared.security.ssrf import OutboundPolicy

log = structlog.get_logger(__name__)


class VersionConflict(Exception):
    """The caller edited an older version than the one in force (``If-Match``)."""

    def __init__(self, current: int) -> None:
        self.current = current
        super().__init__(f"the rules are at version {current}")


@dataclass(frozen=True, slots=True)
class Current:
    version: int
    rules: RuleSet
    document: Any
    origin: str


class Edited(NamedTuple):
    current: Current
    created: bool


def _canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True, default=str)


class RuleBook:
    """Caches the parsed rules of the newest version; every call reads through the caller's transaction."""

    def __init__(
        self,
        *,
        file_document: Any,
        file_rules: RuleSet,
        file_origin: str,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        #: What Slack and webhook URLs saved through the API must satisfy (the SSRF guard's form checks).
        self.outbound = outbound
        self._file_document = json.loads(json.dumps(file_document, default=str))
        self._file_origin = file_origin
        self._current = Current(0, file_rules, self._file_document, "file")
        self._seeded = False

    async def current(self, *, rule_sets: RuleSetStore) -> Current:
        """The newest version (seeding from the file on first use); cheap when nothing changed."""
        await self.ensure_seeded(rule_sets=rule_sets)
        return await self.at(rule_sets=rule_sets, latest=await rule_sets.latest_version())

    async def ensure_seeded(self, *, rule_sets: RuleSetStore) -> None:
        if not self._seeded:
            await self._seed(rule_sets)
            self._seeded = True

    async def at(self, *, rule_sets: RuleSetStore, latest: int | None) -> Current:
        """The rules of the newest version as the caller read it (``max(version)``); reloads if it moved."""
        if latest is not None and latest != self._current.version:
            loaded = await rule_sets.load(version=latest)
            if loaded is not None:
                try:
                    rules = parse_rules(loaded.document, origin=f"rules v{loaded.version}")
                except RuleFileError as exc:  # written by an older release with laxer checks
                    log.error("stored_rules_invalid", version=loaded.version, error=str(exc))
                else:
                    self._current = Current(loaded.version, rules, loaded.document, loaded.origin)
                    log.info(
                        "rules_loaded", version=loaded.version, origin=loaded.origin, rules=len(rules.rules)
                    )
        return self._current

    async def _seed(self, rule_sets: RuleSetStore) -> None:
        await rule_sets.lock()
        latest = await rule_sets.load()
        if latest is None:
            await rule_sets.insert(version=1, document=self._file_document, origin="file")
            log.info("rules_seeded", file=self._file_origin)
            return
        if _canonical(latest.document) == _canonical(self._file_document):
            return
        if latest.origin == "file":
            await rule_sets.insert(version=latest.version + 1, document=self._file_document, origin="file")
            log.info("rules_file_changed", file=self._file_origin, version=latest.version + 1)
        else:
            log.warning("rules_file_ignored", file=self._file_origin, reason="edited through the admin API")

    async def replace(
        self,
        *,
        rule_sets: RuleSetStore,
        document: Any,
        expected_version: int | None = None,
        author: str | None = None,
    ) -> Current:
        """Validate and store a whole new rule set as the next version (``author``: who saved it)."""
        rules = parse_rules(document, origin="request", outbound=self.outbound)
        await rule_sets.lock()
        latest = await rule_sets.latest_version() or 0
        if expected_version is not None and expected_version != latest:
            raise VersionConflict(latest)
        await rule_sets.insert(version=latest + 1, document=document, origin="api", author=author)
        self._current = Current(latest + 1, rules, document, "api")
        return self._current

    async def edit(
        self,
        *,
        rule_sets: RuleSetStore,
        put: dict[str, Any] | None = None,
        delete: str | None = None,
        expected_version: int | None = None,
        author: str | None = None,
    ) -> Edited:
        """Create/replace one rule (``put``) or delete one (``delete``)."""
        await rule_sets.lock()
        now = await self.current(rule_sets=rule_sets)
        document = json.loads(json.dumps(now.document, default=str))
        items: list[Any] = list(document.get("rules") or [])
        ids = [r.get("id") if isinstance(r, dict) else None for r in items]
        created = False
        if put is not None:
            rid = put.get("id")
            if rid in ids:
                items[ids.index(rid)] = put
            else:
                items.append(put)
                created = True
        elif delete is not None:
            if delete not in ids:
                raise KeyError(delete)
            items.pop(ids.index(delete))
        document["rules"] = items
        replaced = await self.replace(
            rule_sets=rule_sets, document=document, expected_version=expected_version, author=author
        )
        return Edited(replaced, created)
