"""The identity API for machines and scripts: people, API tokens, the audit log, the public keys.

Bearer credentials only (an API token, the bootstrap key, a console access token), checked by the
shared ``Authenticator``: browsers' session cookies open nothing here, so no CSRF exposure. Every
change and every audit read is itself audited; answers never carry password hashes or token secrets
(a token's secret is in its creation answer only).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.console.deps import ConsoleDeps
from services.console.people import SERVICE, Actor, PersonChanges, set_person_password, update_person
from services.console.web import client_ip
from shared.identity.accounts import (
    NotAllowed,
    TokenRequest,
    audit_entry,
    create_api_token,
    create_user,
    revoke_api_token,
)
from shared.identity.passwords import password_problem
from shared.identity.ports import ApiToken, AuditAction, AuditQuery, AuditRecord, Conflict, NewUser, User
from shared.identity.principal import InvalidGrant, Principal, SegmentGrant, parse_grants
from shared.identity.scopes import Role, Scope
from shared.security.text import SafeLine

Grants = list[SafeLine] | None


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: SafeLine = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    display_name: SafeLine = Field(min_length=1, max_length=200)
    role: Role
    segments: Grants = Field(default=None, description="Segment grants; null = every segment")
    accounts: list[SafeLine] = Field(default_factory=list, description="Accounts a CSM owns")
    password: SafeLine | None = Field(default=None, max_length=1024, description="For local sign-in")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    display_name: SafeLine | None = Field(default=None, min_length=1, max_length=200)
    role: Role | None = None
    segments: Grants = Field(default=None, description="Replaces the grants when present (null = every)")
    accounts: list[SafeLine] | None = None
    disabled: bool | None = None
    password: SafeLine | None = Field(default=None, max_length=1024)


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SafeLine = Field(min_length=1, max_length=200)
    role: Role
    scopes: list[Scope] = Field(min_length=1)
    expires_in_days: int = Field(default=90, ge=1, le=366)
    segments: Grants = None
    accounts: list[SafeLine] = Field(default_factory=list)


def user_out(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role.value,
        "segments": _grants_out(user.segments),
        "accounts": sorted(user.accounts),
        "disabled": user.disabled,
        "local_password": user.password_hash is not None,
        "oidc_linked": user.oidc_subject is not None,
        "created_at": user.created_at.isoformat(),
        "last_sign_in_at": user.last_sign_in_at.isoformat() if user.last_sign_in_at else None,
        "locked_until": user.locked_until.isoformat() if user.locked_until else None,
    }


def token_out(token: ApiToken) -> dict[str, Any]:
    return {
        "token_id": token.token_id,
        "name": token.name,
        "role": token.role.value,
        "scopes": sorted(s.value for s in token.scopes),
        "segments": _grants_out(token.segments),
        "accounts": sorted(token.accounts),
        "created_by": token.created_by,
        "created_at": token.created_at.isoformat(),
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
    }


def audit_out(record: AuditRecord) -> dict[str, Any]:
    e = record.entry
    return {
        "audit_id": record.audit_id,
        "at": e.at.isoformat(),
        "actor": e.actor,
        "action": e.action.value,
        "service": e.service,
        "outcome": e.outcome.value,
        "target": e.target,
        "source_ip": e.source_ip,
        "details": dict(e.details),
    }


def _grants_out(grants: frozenset[SegmentGrant] | None) -> list[str] | None:
    return None if grants is None else sorted(str(g) for g in grants)


def _grants_in(texts: list[str] | None) -> frozenset[SegmentGrant] | None:
    try:
        return parse_grants(texts)
    except InvalidGrant as exc:
        raise HTTPException(422, str(exc)) from None


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["identity"])
    add_user_routes(r, deps)
    add_token_routes(r, deps)
    add_audit_routes(r, deps)
    return r


def add_user_routes(r: APIRouter, deps: ConsoleDeps) -> None:
    people_admin = Depends(deps.auth.require(Scope.USERS_ADMIN))

    def actor(request: Request, principal: Principal) -> Actor:
        return Actor(principal, deps.clock(), client_ip(request, deps.settings.proxy_networks))

    @r.post("/users", status_code=201, summary="Add a person (users:admin; audited)")
    async def add_user(request: Request, body: UserIn, principal: Principal = people_admin) -> Any:
        if body.password and (why := password_problem(body.password, email=body.email)):
            raise HTTPException(422, why)
        new = NewUser(
            email=body.email,
            display_name=body.display_name,
            role=body.role,
            segments=_grants_in(body.segments),
            accounts=frozenset(body.accounts),
            password_hash=deps.passwords.hash(body.password) if body.password else None,
        )
        who = actor(request, principal)
        try:
            user = await create_user(
                users=deps.identity, audit=deps.identity, by=principal, user=new, service=SERVICE, at=who.at
            )
        except NotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except Conflict:
            raise HTTPException(409, "a person with this email address exists") from None
        return user_out(user)

    @r.get("/users", summary="Every person (users:admin)")
    async def list_users(principal: Principal = people_admin) -> Any:
        return {"users": [user_out(u) for u in await deps.identity.list_users()]}

    @r.get("/users/{user_id}", summary="One person (users:admin)")
    async def get_user(user_id: str, principal: Principal = people_admin) -> Any:
        user = await deps.identity.get_user(user_id=user_id)
        if user is None:
            raise HTTPException(404, "no such person")
        return user_out(user)

    add_user_change_route(r, deps, people_admin)


def add_user_change_route(r: APIRouter, deps: ConsoleDeps, people_admin: Any) -> None:
    """PATCH of a person: role, grants, accounts, disabled, and a new password (each audited)."""

    def actor(request: Request, principal: Principal) -> Actor:
        return Actor(principal, deps.clock(), client_ip(request, deps.settings.proxy_networks))

    @r.patch("/users/{user_id}", summary="Change a person: role, grants, disabled, password (audited)")
    async def patch_user(
        request: Request, user_id: str, body: UserPatch, principal: Principal = people_admin
    ) -> Any:
        sent = body.model_fields_set
        current = await deps.identity.get_user(user_id=user_id)
        if current is None:
            raise HTTPException(404, "no such person")
        if body.password is not None and (why := password_problem(body.password, email=current.email)):
            raise HTTPException(422, why)  # refused before anything else changes
        changes = PersonChanges(
            display_name=body.display_name,
            role=body.role,
            set_segments="segments" in sent,
            segments=_grants_in(body.segments) if "segments" in sent else None,
            accounts=frozenset(body.accounts) if body.accounts is not None else None,
            disabled=body.disabled,
        )
        who = actor(request, principal)
        try:
            user = await update_person(
                users=deps.identity,
                sessions=deps.identity,
                audit=deps.identity,
                actor=who,
                user_id=user_id,
                changes=changes,
            )
            if user is not None and body.password is not None:
                await set_person_password(
                    users=deps.identity,
                    audit=deps.identity,
                    passwords=deps.passwords,
                    actor=who,
                    user=user,
                    password=body.password,
                )
        except NotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if user is None:
            raise HTTPException(404, "no such person")
        return user_out(await deps.identity.get_user(user_id=user_id) or user)


def add_token_routes(r: APIRouter, deps: ConsoleDeps) -> None:
    token_admin = Depends(deps.auth.require(Scope.TOKENS_ADMIN))

    @r.post("/tokens", status_code=201, summary="Issue an API token (tokens:admin; the secret is shown once)")
    async def add_token(body: TokenIn, principal: Principal = token_admin) -> Any:
        now = deps.clock()
        request = TokenRequest(
            name=body.name,
            role=body.role,
            scopes=frozenset(body.scopes),
            expires_at=now + timedelta(days=body.expires_in_days),
            segments=_grants_in(body.segments),
            accounts=frozenset(body.accounts),
        )
        try:
            created = await create_api_token(
                tokens=deps.identity,
                users=deps.identity,
                audit=deps.identity,
                by=principal,
                request=request,
                service=SERVICE,
                at=now,
            )
        except NotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        return {"secret": created.secret, "token": token_out(created.token)}

    @r.get("/tokens", summary="Every API token, never a secret (tokens:admin)")
    async def list_tokens(principal: Principal = token_admin) -> Any:
        return {"tokens": [token_out(t) for t in await deps.identity.list_tokens()]}

    @r.delete("/tokens/{token_id}", status_code=204, summary="Revoke a token (tokens:admin; audited)")
    async def revoke(token_id: str, principal: Principal = token_admin) -> Response:
        try:
            revoked = await revoke_api_token(
                tokens=deps.identity,
                users=deps.identity,
                audit=deps.identity,
                by=principal,
                token_id=token_id,
                service=SERVICE,
                at=deps.clock(),
            )
        except NotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        if not revoked:
            raise HTTPException(404, "no such active token")
        deps.auth.forget()
        return Response(status_code=204)


def add_audit_routes(r: APIRouter, deps: ConsoleDeps) -> None:
    audit_reader = Depends(deps.auth.require(Scope.AUDIT_READ))

    @r.get("/audit", summary="The audit log, newest first (audit:read; the read is audited)")
    async def read_audit(
        request: Request,
        since: datetime | None = None,
        until: datetime | None = None,
        actor: Annotated[SafeLine | None, Query(max_length=200)] = None,
        action: AuditAction | None = None,
        target: Annotated[SafeLine | None, Query(max_length=200)] = None,
        before_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,  # a PostgreSQL bigint
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        principal: Principal = audit_reader,
    ) -> Any:
        for moment in (since, until):
            if moment is not None and moment.tzinfo is None:
                raise HTTPException(422, "since and until need a time zone (e.g. 2026-12-01T00:00:00Z)")
        query = AuditQuery(
            since=since,
            until=until,
            actor=actor,
            action=action,
            target=target,
            before_id=before_id,
            limit=limit,
        )
        records = await deps.identity.read_audit(query=query)
        await deps.identity.append_audit(
            entry=audit_entry(
                principal,
                AuditAction.AUDIT_READ,
                service=SERVICE,
                at=deps.clock(),
                source_ip=client_ip(request, deps.settings.proxy_networks),
                details={"count": len(records)},
            )
        )
        next_before = records[-1].audit_id if len(records) == limit else None
        return {"entries": [audit_out(x) for x in records], "next_before_id": next_before}


def jwks_router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(tags=["identity"])

    @r.get("/.well-known/jwks.json", summary="The public keys that verify console access tokens")
    async def jwks() -> JSONResponse:
        return JSONResponse(deps.jwks.to_jwks(), headers={"Cache-Control": "public, max-age=300"})

    return r
