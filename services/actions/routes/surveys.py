"""The surveys admin API: the survey set in force, its versions, validation, whole-set and per-survey edits
(versioned like the rules, ``If-Match`` for optimistic locking), and each survey's response figures."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from services.actions.deps import ActionsDeps
from services.actions.ports import StoredInvitation
from services.actions.routes.auditing import record
from services.actions.rulebook import VersionConflict
from services.actions.surveybook import CurrentSurveys
from services.actions.surveys.decisions import Delivery
from services.actions.surveys.definitions import SurveyError, SurveyFileError, parse_surveys
from services.actions.surveys.measuring import Funnel, InvitationRecord, rates, tally
from services.actions.yamlio import load_yaml
from shared.http import problem
from shared.identity.ports import AuditAction
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.stats import Proportion

log = structlog.get_logger(__name__)

SURVEYS_PROBLEM = "https://csat.dev/problems/invalid-surveys"
SurveyId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


def _invalid(exc: SurveyFileError) -> JSONResponse:
    first = exc.errors[0]
    return problem(
        422,
        "Invalid surveys",
        detail=str(first),
        type_=SURVEYS_PROBLEM,
        errors=[{"field": e.field, "survey": e.survey or "", "message": e.message} for e in exc.errors],
        survey=first.survey,
    )


def _conflict(exc: VersionConflict) -> JSONResponse:
    return problem(
        412, "Precondition Failed", detail=f"the surveys are at version {exc.current}", revision=exc.current
    )


async def _read(request: Request) -> Any:
    """A survey document (or one survey) as YAML or JSON, by Content-Type; YAML when unsure."""
    raw = await request.body()
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SurveyFileError("request", [SurveyError(None, "body", "the body is not UTF-8")]) from exc
    try:
        if "json" in (request.headers.get("content-type") or ""):
            return json.loads(body)
        return load_yaml(body)
    except ValueError as exc:  # JSONDecodeError and YAMLError's message both name the position
        raise SurveyFileError("request", [SurveyError(None, "body", f"not valid: {exc}")]) from exc


def _strip_meta(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if k not in ("revision", "origin")}
    return document


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError:
        raise HTTPException(400, 'If-Match must be the surveys revision, e.g. "3"') from None


def _body(current: CurrentSurveys) -> dict[str, Any]:
    doc = current.document if isinstance(current.document, dict) else {}
    return {"revision": current.version, "origin": current.origin, **doc}


def _etag(current: CurrentSurveys) -> dict[str, str]:
    return {"ETag": f'"{current.version}"'}


def _proportion(p: Proportion) -> dict[str, Any]:
    return {"value": p.value, "ci_low": p.ci_low, "ci_high": p.ci_high, "n": p.n}


def _record(row: StoredInvitation) -> InvitationRecord:
    return InvitationRecord(
        survey_id=row.survey_id,
        channel=row.channel,
        segment=row.segment,
        delivery=Delivery(row.delivery),
        sent_at=row.sent_at,
        expires_at=row.expires_at,
        answered_at=row.answered_at,
        commented=row.answered_with_comment,
    )


def _figures(funnel: Funnel) -> dict[str, Any]:
    r = rates(funnel)
    return {
        "invited": funnel.invited,
        "sent": funnel.sent,
        "delivered": funnel.delivered,
        "bounced": funnel.bounced,
        "answered": funnel.answered,
        "answered_with_comment": funnel.commented,
        "expired": funnel.expired,
        "response_rate": _proportion(r.response),
        "completion_rate": _proportion(r.completion),
        "answered_per_invited": funnel.answered / funnel.invited if funnel.invited else None,
        "time_to_answer_s": {"p50": r.answer_p50_s, "p90": r.answer_p90_s},
        "low_response": r.low_response,
    }


def _with_survey(document: dict[str, Any], item: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The document with ``item`` added or put in place of the survey with its id; whether it was added."""
    items = list(document.get("surveys") or [])
    ids = [s.get("id") if isinstance(s, dict) else None for s in items]
    created = item["id"] not in ids
    if created:
        items.append(item)
    else:
        items[ids.index(item["id"])] = item
    return {**document, "surveys": items}, created


def _without_survey(document: dict[str, Any], survey_id: str) -> dict[str, Any] | None:
    """The document without the survey ``survey_id``; None when it holds no such survey."""
    items = [
        s for s in document.get("surveys") or [] if not (isinstance(s, dict) and s.get("id") == survey_id)
    ]
    if len(items) == len(document.get("surveys") or []):
        return None
    return {**document, "surveys": items}


def router(deps: ActionsDeps) -> APIRouter:
    """The survey routes, registered in this order (``/v1/surveys/versions`` before ``/{survey_id}``)."""
    api = APIRouter(tags=["surveys"])
    # Survey definitions sit beside the rules: whoever may read the rules reads them (managers, admins);
    # changing them is surveys:admin. Their figures are aggregates over every segment, for the same people.
    reader = Depends(deps.auth.require(Scope.RULES_READ))
    editor = Depends(deps.auth.require(Scope.SURVEYS_ADMIN))
    _set_routes(api, deps, reader=reader, editor=editor)
    _get_survey_route(api, deps, reader=reader)
    _put_survey_route(api, deps, editor=editor)
    _delete_survey_route(api, deps, editor=editor)
    _stats_route(api, deps, reader=reader)
    return api


def _set_routes(api: APIRouter, deps: ActionsDeps, *, reader: Any, editor: Any) -> None:
    """The whole survey set: read, history, validate, replace."""
    book, tx = deps.surveybook, deps.transactions

    @api.get("/v1/surveys", summary="The survey set in force")
    async def get_surveys(principal: Principal = reader) -> Any:
        async with tx.begin() as stores:
            current = await book.current(survey_sets=stores.survey_sets)
        return JSONResponse(_body(current), headers=_etag(current))

    @api.get("/v1/surveys/versions", summary="Revision history")
    async def get_versions(
        limit: Annotated[int, Query(ge=1, le=500)] = 50, principal: Principal = reader
    ) -> Any:
        async with tx.connect() as stores:
            return {"versions": await stores.survey_sets.versions(limit=limit)}

    @api.post("/v1/surveys/validate", summary="Check a survey document without storing it")
    async def validate(request: Request, principal: Principal = reader) -> Any:
        try:
            parsed = parse_surveys(_strip_meta(await _read(request)), origin="request")
        except SurveyFileError as exc:
            return _invalid(exc)
        return {"valid": True, "surveys": [s.id for s in parsed.surveys]}

    @api.put("/v1/surveys", summary="Replace the whole survey set (YAML or JSON)")
    async def put_surveys(
        request: Request, if_match: Annotated[str | None, Header()] = None, principal: Principal = editor
    ) -> Any:
        try:
            document = _strip_meta(await _read(request))
            async with tx.begin() as stores:
                current = await book.replace(
                    survey_sets=stores.survey_sets,
                    document=document,
                    expected_version=_if_match(if_match),
                    author=principal.log_name,
                )
        except SurveyFileError as exc:
            return _invalid(exc)
        except VersionConflict as exc:
            return _conflict(exc)
        log.info("surveys_replaced", revision=current.version, surveys=len(current.surveys.surveys))
        await record(
            deps,
            request,
            principal,
            AuditAction.SURVEYS_UPDATE,
            target="surveys",
            details={"revision": current.version, "surveys": len(current.surveys.surveys)},
        )
        return JSONResponse(_body(current), headers=_etag(current))


def _get_survey_route(api: APIRouter, deps: ActionsDeps, *, reader: Any) -> None:
    """One survey of the set in force."""
    book, tx = deps.surveybook, deps.transactions

    @api.get("/v1/surveys/{survey_id}", summary="One survey")
    async def get_survey(survey_id: SurveyId, principal: Principal = reader) -> Any:
        async with tx.begin() as stores:
            current = await book.current(survey_sets=stores.survey_sets)
        for item in current.document.get("surveys", []) if isinstance(current.document, dict) else []:
            if isinstance(item, dict) and item.get("id") == survey_id:
                return JSONResponse({"revision": current.version, "survey": item}, headers=_etag(current))
        return problem(404, "Not Found", detail=f"no survey {survey_id!r}")


def _put_survey_route(api: APIRouter, deps: ActionsDeps, *, editor: Any) -> None:
    """Create or replace one survey: a new revision of the whole set."""
    book, tx = deps.surveybook, deps.transactions

    @api.put("/v1/surveys/{survey_id}", summary="Create or replace one survey")
    async def put_survey(
        request: Request,
        survey_id: SurveyId,
        if_match: Annotated[str | None, Header()] = None,
        principal: Principal = editor,
    ) -> Any:
        try:
            item = await _read(request)
            if not isinstance(item, dict) or item.get("id", survey_id) != survey_id:
                raise SurveyFileError(
                    "request", [SurveyError(survey_id, "id", "one survey whose id is the path's is expected")]
                )
            item = {**item, "id": survey_id}
            async with tx.begin() as stores:
                now = await book.current(survey_sets=stores.survey_sets)
                document, created = _with_survey(json.loads(json.dumps(now.document, default=str)), item)
                current = await book.replace(
                    survey_sets=stores.survey_sets,
                    document=document,
                    expected_version=_if_match(if_match),
                    author=principal.log_name,
                )
        except SurveyFileError as exc:
            return _invalid(exc)
        except VersionConflict as exc:
            return _conflict(exc)
        log.info("survey_saved", survey=survey_id, revision=current.version, created=created)
        await record(
            deps,
            request,
            principal,
            AuditAction.SURVEYS_UPDATE,
            target=f"survey:{survey_id}",
            details={"revision": current.version, "created": created},
        )
        return JSONResponse(
            {"revision": current.version, "survey": item},
            status_code=201 if created else 200,
            headers=_etag(current),
        )


def _delete_survey_route(api: APIRouter, deps: ActionsDeps, *, editor: Any) -> None:
    """Delete one survey: a new revision of the whole set."""
    book, tx = deps.surveybook, deps.transactions

    @api.delete("/v1/surveys/{survey_id}", summary="Delete one survey")
    async def delete_survey(
        request: Request,
        survey_id: SurveyId,
        if_match: Annotated[str | None, Header()] = None,
        principal: Principal = editor,
    ) -> Any:
        try:
            async with tx.begin() as stores:
                now = await book.current(survey_sets=stores.survey_sets)
                document = _without_survey(json.loads(json.dumps(now.document, default=str)), survey_id)
                if document is None:
                    return problem(404, "Not Found", detail=f"no survey {survey_id!r}")
                current = await book.replace(
                    survey_sets=stores.survey_sets,
                    document=document,
                    expected_version=_if_match(if_match),
                    author=principal.log_name,
                )
        except SurveyFileError as exc:
            return _invalid(exc)
        except VersionConflict as exc:
            return _conflict(exc)
        log.info("survey_deleted", survey=survey_id, revision=current.version)
        await record(
            deps,
            request,
            principal,
            AuditAction.SURVEY_DELETE,
            target=f"survey:{survey_id}",
            details={"revision": current.version},
        )
        return {"revision": current.version, "deleted": survey_id}


def _stats_route(api: APIRouter, deps: ActionsDeps, *, reader: Any) -> None:
    """Each survey's funnel and rates, overall and by the groups asked for."""
    tx = deps.transactions

    @api.get(
        "/v1/surveys/{survey_id}/stats",
        summary="Invitations, answers, response and completion rates with their 95 % intervals",
    )
    async def survey_stats(
        survey_id: SurveyId,
        by: Annotated[str | None, Query(description="channel, segment.<dimension>, comma-separated")] = None,
        days: Annotated[
            int | None, Query(ge=1, le=3650, description="invitations due in the last N days")
        ] = None,
        principal: Principal = reader,
    ) -> Any:
        now = deps.clock()
        since: datetime | None = now - timedelta(days=days) if days else None
        async with tx.connect() as stores:
            rows = await stores.surveys.list(survey_id=survey_id, since=since)
        records = [_record(r) for r in rows]
        groups = [g.strip() for g in (by or "").split(",") if g.strip()]
        try:
            overall = tally(records, by=["survey"], now=now)
            grouped = tally(records, by=groups, now=now) if groups else {}
        except ValueError as exc:
            return problem(
                422, "Invalid request", detail=str(exc), errors=[{"field": "by", "message": str(exc)}]
            )
        funnel = next(iter(overall.values()), Funnel())
        return {
            "survey_id": survey_id,
            **_figures(funnel),
            "groups": [
                {"group": {label.name: label.value for label in g.labels}, **_figures(f)}
                for g, f in sorted(grouped.items(), key=lambda kv: str(kv[0]))
            ],
        }
