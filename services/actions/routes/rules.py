"""The rules API: the rule set in force, its versions, validation (``rules:read``), whole-set and per-rule
edits (``rules:admin``, each revision recording its author: the caller's ``log_name``)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import structlog
import yaml
from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from services.actions.deps import ActionsDeps
from services.actions.routes.auditing import record
from services.actions.rulebook import Current, VersionConflict
from services.actions.rules import RuleError, RuleFileError, parse_document, parse_rules
from shared.http import problem
from shared.identity.ports import AuditAction
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.security.text import json_text_field

log = structlog.get_logger(__name__)

RULES_PROBLEM = "https://csat.dev/problems/invalid-rules"


def _invalid_rules(exc: RuleFileError) -> JSONResponse:
    first = exc.errors[0]
    return problem(
        422,
        "Invalid rules",
        detail=str(first),
        type_=RULES_PROBLEM,
        errors=[{"field": e.field, "rule": e.rule, "message": e.message} for e in exc.errors],
        rule=first.rule,
    )


def _conflict(exc: VersionConflict) -> JSONResponse:
    return problem(412, "Precondition Failed", detail=str(exc), revision=exc.current)


async def _read_document(request: Request) -> Any:
    """A rules document (or one rule) as YAML or JSON, by Content-Type; YAML when unsure."""
    raw = await request.body()
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleFileError("request", [RuleError(None, "body", "the body is not UTF-8")]) from exc
    if "json" in (request.headers.get("content-type") or ""):
        try:
            document = json.loads(body)
        except json.JSONDecodeError as exc:
            raise RuleFileError("request", [RuleError(None, "body", f"not valid JSON: {exc}")]) from exc
    else:
        document = parse_document(body, origin="request")
    found = json_text_field(document)  # YAML's "\0" or a lone surrogate would reach PostgreSQL's JSONB
    if found is not None:
        field, why, is_key = found
        message = f"a key of {field} {why}" if is_key else f"{field} {why}"
        raise RuleFileError("request", [RuleError(None, field, message)])
    return document


def _strip_meta(document: Any) -> Any:
    """What GET returns can be PUT back: drop the read-only revision fields."""
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if k not in ("revision", "origin")}
    return document


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().strip("W/").strip('"'))
    except ValueError:
        raise HTTPException(400, 'If-Match must be the rules revision, e.g. "3"') from None


def _rules_body(current: Current) -> dict[str, Any]:
    doc = current.document if isinstance(current.document, dict) else {}
    return {"revision": current.version, "origin": current.origin, **doc}


def _etag(current: Current) -> dict[str, str]:
    return {"ETag": f'"{current.version}"'}


async def _rule_body(request: Request, rule_id: str) -> dict[str, Any]:
    """The body of a per-rule PUT: one rule as a mapping, whose id (if any) is the path's."""
    item = await _read_document(request)
    if not isinstance(item, dict):
        raise RuleFileError("request", [RuleError(rule_id, "body", "one rule as a mapping is expected")])
    if item.get("id", rule_id) != rule_id:
        raise RuleFileError("request", [RuleError(rule_id, "id", "the id in the body differs from the path")])
    return {**item, "id": rule_id}


def router(deps: ActionsDeps) -> APIRouter:
    api = APIRouter(tags=["rules"])
    _whole_set(api, deps)
    _one_rule(api, deps)  # after /v1/rules/versions and /validate, which {rule_id} would shadow
    return api


def _whole_set(api: APIRouter, deps: ActionsDeps) -> None:
    book, tx = deps.rulebook, deps.transactions
    reader = Depends(deps.auth.require(Scope.RULES_READ))
    editor = Depends(deps.auth.require(Scope.RULES_ADMIN))

    @api.get("/v1/rules", summary="The rule set in force (JSON, or ?format=yaml)")
    async def get_rules(format: Literal["json", "yaml"] = "json", principal: Principal = reader) -> Any:
        async with tx.begin() as stores:
            current = await book.current(rule_sets=stores.rule_sets)
        if format == "yaml":
            text = f"# revision {current.version} ({current.origin})\n" + yaml.safe_dump(
                current.document, sort_keys=False, allow_unicode=True
            )
            return Response(text, media_type="application/yaml", headers=_etag(current))
        return JSONResponse(_rules_body(current), headers=_etag(current))

    @api.get("/v1/rules/versions", summary="Revision history")
    async def get_rule_versions(
        limit: Annotated[int, Query(ge=1, le=500)] = 50, principal: Principal = reader
    ) -> Any:
        async with tx.connect() as stores:
            return {"versions": await stores.rule_sets.versions(limit=limit)}

    @api.post("/v1/rules/validate", summary="Check a rules document without storing it")
    async def validate_rules(request: Request, principal: Principal = reader) -> Any:
        try:
            document = _strip_meta(await _read_document(request))
            rules = parse_rules(document, origin="request", outbound=book.outbound)
        except RuleFileError as exc:
            return _invalid_rules(exc)
        return {"valid": True, "rules": [r.id for r in rules.rules], "sequences": sorted(rules.sequences)}

    @api.put("/v1/rules", summary="Replace the whole rule set (YAML or JSON)")
    async def put_rules(
        request: Request, if_match: Annotated[str | None, Header()] = None, principal: Principal = editor
    ) -> Any:
        try:
            document = _strip_meta(await _read_document(request))
            async with tx.begin() as stores:
                current = await book.replace(
                    rule_sets=stores.rule_sets,
                    document=document,
                    expected_version=_if_match(if_match),
                    author=principal.log_name,
                )
        except RuleFileError as exc:
            return _invalid_rules(exc)
        except VersionConflict as exc:
            return _conflict(exc)
        log.info("rules_replaced", revision=current.version, rules=len(current.rules.rules))
        await record(
            deps,
            request,
            principal,
            AuditAction.RULES_UPDATE,
            target="rules",
            details={"revision": current.version, "rules": len(current.rules.rules)},
        )
        return JSONResponse(_rules_body(current), headers=_etag(current))


def _one_rule(api: APIRouter, deps: ActionsDeps) -> None:
    book, tx = deps.rulebook, deps.transactions
    reader = Depends(deps.auth.require(Scope.RULES_READ))
    editor = Depends(deps.auth.require(Scope.RULES_ADMIN))

    @api.get("/v1/rules/{rule_id}", summary="One rule")
    async def get_rule(rule_id: str, principal: Principal = reader) -> Any:
        async with tx.begin() as stores:
            current = await book.current(rule_sets=stores.rule_sets)
        for item in current.document.get("rules", []) if isinstance(current.document, dict) else []:
            if isinstance(item, dict) and item.get("id") == rule_id:
                return {"revision": current.version, "rule": item}
        return problem(404, "Not Found", detail=f"no rule {rule_id!r}")

    @api.put("/v1/rules/{rule_id}", summary="Create or replace one rule")
    async def put_rule(
        request: Request,
        rule_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")],
        if_match: Annotated[str | None, Header()] = None,
        principal: Principal = editor,
    ) -> Any:
        try:
            item = await _rule_body(request, rule_id)
            async with tx.begin() as stores:
                current, created = await book.edit(
                    rule_sets=stores.rule_sets,
                    put=item,
                    expected_version=_if_match(if_match),
                    author=principal.log_name,
                )
        except RuleFileError as exc:
            return _invalid_rules(exc)
        except VersionConflict as exc:
            return _conflict(exc)
        log.info("rule_saved", rule=rule_id, revision=current.version, created=created)
        await record(
            deps,
            request,
            principal,
            AuditAction.RULES_UPDATE,
            target=f"rule:{rule_id}",
            details={"revision": current.version, "created": created},
        )
        return JSONResponse(
            {"revision": current.version, "rule": item},
            status_code=201 if created else 200,
            headers=_etag(current),
        )

    @api.delete("/v1/rules/{rule_id}", summary="Delete one rule")
    async def delete_rule(
        request: Request,
        rule_id: str,
        if_match: Annotated[str | None, Header()] = None,
        principal: Principal = editor,
    ) -> Any:
        try:
            async with tx.begin() as stores:
                current, _ = await book.edit(
                    rule_sets=stores.rule_sets,
                    delete=rule_id,
                    expected_version=_if_match(if_match),
                    author=principal.log_name,
                )
        except KeyError:
            return problem(404, "Not Found", detail=f"no rule {rule_id!r}")
        except RuleFileError as exc:
            return _invalid_rules(exc)
        except VersionConflict as exc:
            return _conflict(exc)
        log.info("rule_deleted", rule=rule_id, revision=current.version)
        await record(
            deps,
            request,
            principal,
            AuditAction.RULE_DELETE,
            target=f"rule:{rule_id}",
            details={"revision": current.version},
        )
        return {"revision": current.version, "deleted": rule_id}
