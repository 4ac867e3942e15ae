"""The survey set in force, versioned in PostgreSQL like the rules (``rulebook``): every replica decides
with the same definitions.

``playbooks/surveys.yaml`` seeds version 1; a changed file becomes a new version unless someone edited the
surveys through the admin API since (then the database wins and the file is reported in the log).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog

from services.actions.ports import RuleSetStore
from services.actions.rulebook import VersionConflict
from services.actions.surveys.definitions import SurveyDef, SurveyFileError, SurveySet, parse_surveys

log = structlog.get_logger(__name__)

__all__ = ["CurrentSurveys", "SurveyBook", "VersionConflict"]


@dataclass(frozen=True, slots=True)
class CurrentSurveys:
    version: int
    surveys: SurveySet
    document: Any
    origin: str

    def get(self, survey_id: str) -> SurveyDef | None:
        return next((s for s in self.surveys.surveys if s.id == survey_id), None)


def _canonical(document: Any) -> str:
    return json.dumps(document, sort_keys=True, default=str)


class SurveyBook:
    """Caches the parsed surveys of the newest version; every call reads through the caller's transaction."""

    def __init__(self, *, file_document: Any, file_surveys: SurveySet, file_origin: str) -> None:
        self._file_document = json.loads(json.dumps(file_document, default=str))
        self._file_origin = file_origin
        self._current = CurrentSurveys(0, file_surveys, self._file_document, "file")
        self._seeded = False

    async def current(self, *, survey_sets: RuleSetStore) -> CurrentSurveys:
        if not self._seeded:
            await self._seed(survey_sets)
            self._seeded = True
        latest = await survey_sets.latest_version()
        if latest is not None and latest != self._current.version:
            loaded = await survey_sets.load(version=latest)
            if loaded is not None:
                try:
                    parsed = parse_surveys(loaded.document, origin=f"surveys v{loaded.version}")
                except SurveyFileError as exc:  # written by an older release with laxer checks
                    log.error("stored_surveys_invalid", version=loaded.version, error=str(exc))
                else:
                    self._current = CurrentSurveys(loaded.version, parsed, loaded.document, loaded.origin)
                    log.info("surveys_loaded", version=loaded.version, surveys=len(parsed.surveys))
        return self._current

    async def _seed(self, survey_sets: RuleSetStore) -> None:
        await survey_sets.lock()
        latest = await survey_sets.load()
        if latest is None:
            await survey_sets.insert(version=1, document=self._file_document, origin="file")
            log.info("surveys_seeded", file=self._file_origin)
            return
        if _canonical(latest.document) == _canonical(self._file_document):
            return
        if latest.origin == "file":
            await survey_sets.insert(version=latest.version + 1, document=self._file_document, origin="file")
            log.info("surveys_file_changed", file=self._file_origin, version=latest.version + 1)
        else:
            log.warning("surveys_file_ignored", file=self._file_origin, reason="edited through the admin API")

    async def replace(
        self,
        *,
        survey_sets: RuleSetStore,
        document: Any,
        expected_version: int | None = None,
        author: str | None = None,
    ) -> CurrentSurveys:
        """Validate (``SurveyFileError`` naming survey and field) and store the next version."""
        parsed = parse_surveys(document, origin="request")
        await self.current(survey_sets=survey_sets)
        await survey_sets.lock()
        latest = await survey_sets.latest_version() or 0
        if expected_version is not None and expected_version != latest:
            raise VersionConflict(latest)
        await survey_sets.insert(version=latest + 1, document=document, origin="api", author=author)
        self._current = CurrentSurveys(latest + 1, parsed, document, "api")
        return self._current
