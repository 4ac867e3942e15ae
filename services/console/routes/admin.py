"""The "people & tokens" page: people and their roles, API tokens (secret shown once), recent audit entries.

Forms post back here (CSRF-checked) and redirect (post/redirect/get); the role and status forms are
also htmx forms that swap the person's table row in place, the pattern the views follow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.people import (
    SERVICE,
    Actor,
    PersonChanges,
    grants_from_lines,
    parse_lines,
    update_person,
)
from services.console.web import client_ip, not_found
from shared.identity.accounts import NotAllowed, TokenRequest, create_api_token, create_user, revoke_api_token
from shared.identity.passwords import password_problem
from shared.identity.ports import AuditQuery, Conflict, NewUser, User
from shared.identity.scopes import Role, Scope, parse_role, parse_scopes
from shared.security.text import text_problem

PAGE = "/admin/people"
ROLES = [r.value for r in Role]
SCOPES = [s.value for s in Scope]


@dataclass(frozen=True, slots=True)
class PersonForm:
    name: str = ""
    email: str = ""
    role: str = "viewer"
    segments: str = ""
    accounts: str = ""


class PeoplePage:
    """Renders the page with everything the caller's scopes let them see."""

    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps

    async def render(
        self,
        request: Request,
        person: SignedIn,
        *,
        status: int = 200,
        error: str | None = None,
        form: PersonForm | None = None,
    ) -> Response:
        deps, principal = self.deps, person.principal
        tokens = await deps.identity.list_tokens() if principal.can(Scope.TOKENS_ADMIN) else []
        audit = []
        if principal.can(Scope.AUDIT_READ):
            audit = await deps.identity.read_audit(query=AuditQuery(limit=20))
        return deps.pages.render(
            request,
            "admin_people.html",
            status=status,
            people=await deps.identity.list_users(),
            tokens=tokens,
            audit=audit,
            roles=ROLES,
            scopes=SCOPES,
            now=deps.clock(),
            flash=await _flash(deps, request),
            error=error,
            form=form or PersonForm(),
        )


def _actor(deps: ConsoleDeps, request: Request, person: SignedIn) -> Actor:
    return Actor(person.principal, deps.clock(), client_ip(request, deps.settings.proxy_networks))


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    people_admin = Depends(deps.gate.person(Scope.USERS_ADMIN))
    checked = [Depends(deps.gate.csrf)]
    view = PeoplePage(deps)

    @r.get(PAGE)
    async def people_page(request: Request, person: SignedIn = people_admin) -> Response:
        return await view.render(request, person)

    @r.post(PAGE, dependencies=checked)
    async def add_person(
        request: Request,
        name: Annotated[str, Form(max_length=200)] = "",
        email: Annotated[str, Form(max_length=320)] = "",
        role: Annotated[str, Form(max_length=20)] = "viewer",
        segments: Annotated[str, Form(max_length=4000)] = "",
        accounts: Annotated[str, Form(max_length=4000)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        person: SignedIn = people_admin,
    ) -> Response:
        form = PersonForm(name=name, email=email, role=role, segments=segments, accounts=accounts)
        try:
            new = _new_user(form, password=password, hasher=deps.passwords.hash)
            who = _actor(deps, request, person)
            created = await create_user(
                users=deps.identity,
                audit=deps.identity,
                by=who.principal,
                user=new,
                service=SERVICE,
                at=who.at,
            )
        except (ValueError, NotAllowed) as exc:  # InvalidGrant and UnknownScope are ValueErrors
            return await view.render(request, person, status=422, error=str(exc), form=form)
        except Conflict:
            return await view.render(request, person, status=409, error="people.email_taken", form=form)
        return RedirectResponse(f"{PAGE}?flash=people.created&user={created.user_id}", status_code=303)

    @r.post(PAGE + "/{user_id}", dependencies=checked)
    async def change_person(
        request: Request,
        user_id: str,
        action: Annotated[str, Form(max_length=20)] = "role",
        role: Annotated[str, Form(max_length=20)] = "",
        person: SignedIn = people_admin,
    ) -> Response:
        changes = {
            "role": PersonChanges(role=parse_role(role) if role in ROLES else None),
            "disable": PersonChanges(disabled=True),
            "enable": PersonChanges(disabled=False),
        }.get(action)
        if changes is None:
            raise not_found()
        try:
            updated = await update_person(
                users=deps.identity,
                sessions=deps.identity,
                audit=deps.identity,
                actor=_actor(deps, request, person),
                user_id=user_id,
                changes=changes,
            )
        except NotAllowed as exc:
            return await view.render(request, person, status=409, error=str(exc))
        if updated is None:
            raise not_found()
        if request.headers.get("hx-request") == "true":
            return deps.pages.render(request, "_person_row.html", p=updated, roles=ROLES, now=deps.clock())
        return RedirectResponse(f"{PAGE}?flash=people.updated&user={user_id}", status_code=303)

    add_token_routes(r, deps, view)
    return r


def _new_user(form: PersonForm, *, password: str, hasher: Callable[[str], str]) -> NewUser:
    """The person to create from the form; ``ValueError`` names what to correct."""
    for label, value in (("name", form.name), ("email", form.email)):
        why = text_problem(value, single_line=True)
        if why or not value.strip():
            raise ValueError(f"{label} {why or 'is required'}")
    if "@" not in form.email.strip()[1:]:
        raise ValueError("email must be an email address")
    problem = password_problem(password, email=form.email) if password else None
    if problem:
        raise ValueError(problem)
    return NewUser(
        email=form.email.strip(),
        display_name=form.name.strip(),
        role=parse_role(form.role),
        segments=grants_from_lines(form.segments),
        accounts=frozenset(parse_lines(form.accounts)),
        password_hash=hasher(password) if password else None,
    )


async def _flash(deps: ConsoleDeps, request: Request) -> str | None:
    """The message of a redirect back here (``?flash=<key>``), with the name it is about."""
    key = request.query_params.get("flash")
    if key not in {"people.created", "people.updated", "tokens.revoked"}:
        return None
    t = deps.pages.translator(request).t
    if key == "tokens.revoked":
        return t(key, token_id=request.query_params.get("token", "")[:12])
    user: User | None = await deps.identity.get_user(user_id=request.query_params.get("user", "")[:40])
    return t(key, name=user.display_name) if user else None


def add_token_routes(r: APIRouter, deps: ConsoleDeps, view: PeoplePage) -> None:
    token_admin = Depends(deps.gate.person(Scope.TOKENS_ADMIN))
    checked = [Depends(deps.gate.csrf)]

    @r.post("/admin/tokens", dependencies=checked)
    async def add_token(
        request: Request,
        name: Annotated[str, Form(max_length=200)] = "",
        role: Annotated[str, Form(max_length=20)] = "viewer",
        scopes: Annotated[list[str] | None, Form()] = None,
        days: Annotated[int, Form(ge=1, le=366)] = 90,
        person: SignedIn = token_admin,
    ) -> Response:
        now = deps.clock()
        try:
            if text_problem(name, single_line=True) or not name.strip():
                raise ValueError("name is required")
            created = await create_api_token(
                tokens=deps.identity,
                users=deps.identity,
                audit=deps.identity,
                by=person.principal,
                request=TokenRequest(
                    name=name.strip(),
                    role=parse_role(role),
                    scopes=parse_scopes(scopes or []),
                    expires_at=now + timedelta(days=days),
                ),
                service=SERVICE,
                at=now,
            )
        except (ValueError, NotAllowed) as exc:
            return await view.render(request, person, status=422, error=str(exc))
        return deps.pages.render(request, "token_created.html", status=201, created=created)

    @r.post("/admin/tokens/{token_id}/revoke", dependencies=checked)
    async def revoke_token(request: Request, token_id: str, person: SignedIn = token_admin) -> Response:
        revoked = await revoke_api_token(
            tokens=deps.identity,
            users=deps.identity,
            audit=deps.identity,
            by=person.principal,
            token_id=token_id,
            service=SERVICE,
            at=deps.clock(),
        )
        if revoked:
            deps.auth.forget()
        return RedirectResponse(f"{PAGE}?flash=tokens.revoked&token={token_id[:12]}", status_code=303)
