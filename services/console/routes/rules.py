"""The Rules view: the playbook as cards, the revision history with diffs, and one rule's edit form.

Everyone with ``rules:read`` (managers, admins) reads; editing needs ``rules:admin``, checked here and
again by the actions service with the person's own token. A save carries the revision the form was
opened at (``If-Match``): when someone saved in between, the form says so, keeps the person's changes
and shows the other version; saving again is then a deliberate choice. The API's validation errors
come back onto the fields that caused them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from services.console.apiclient import ApiError, PersonApi
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.playbook import rules_of, sections, sequence_cards
from services.console.rulediff import diff, field_changes
from services.console.ruleforms import (
    FieldError,
    RuleForm,
    draft_rule,
    dump_yaml,
    errors_by_field,
    rule_errors,
)
from services.console.web import PageError, not_found
from shared.identity.scopes import Scope

RULE_ID = r"^[a-z0-9][a-z0-9-]{0,63}$"


def unavailable(exc: ApiError) -> PageError:
    """An answer the page cannot use: 403/404 as such, anything else "try again in a moment"."""
    if exc.status == 404:
        return not_found()
    if exc.status == 403:
        return PageError(403, "error.forbidden_title", "error.forbidden")
    return PageError(503, "error.unavailable_title", "error.unavailable")


def when_of(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


class RuleFormIn(BaseModel):
    """The posted edit form, bounded; ``to_form`` gives the pure ``RuleForm``."""

    rule_id: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=500)
    enabled: bool = False  # an unticked checkbox sends nothing
    on: str = Field(default="rating", pattern=r"^(rating|segment_alert)$")
    group: str = Field(default="", max_length=64)
    cooldown: str = Field(default="", max_length=20)
    when: str = Field(default="", max_length=20_000)
    actions: str = Field(default="", max_length=20_000)
    revision: int | None = None

    def to_form(self, *, rule_id: str | None = None) -> RuleForm:
        return RuleForm(
            rule_id=rule_id if rule_id is not None else self.rule_id.strip(),
            description=self.description,
            enabled=self.enabled,
            on=self.on,
            group=self.group,
            cooldown=self.cooldown,
            when=self.when,
            actions=self.actions,
            revision=self.revision,
        )


@dataclass(frozen=True, slots=True)
class Revision:
    """A line of the history: number, when, by whom (a name, never an address), how many rules."""

    number: int
    at: datetime | None
    who: str
    rules: int


class History:
    """Reads revisions and names their authors (a person by display name, a token by id)."""

    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps

    async def who(self, request: Request, version: Mapping[str, Any]) -> str:
        t = self.deps.pages.translator(request).t
        author = str(version.get("author") or "")
        kind, _, subject = author.partition(":")
        if kind == "person" and subject:
            user = await self.deps.identity.get_user(user_id=subject)
            return user.display_name if user else t("rules.history.who.unknown", who=author)
        if kind == "token" and subject:
            return t("rules.history.who.token", token=subject)
        if author:
            return t("rules.history.who.unknown", who=author)
        return t("rules.history.who.file" if version.get("origin") == "file" else "rules.history.who.key")

    async def revisions(self, request: Request, api: PersonApi, *, limit: int = 100) -> list[Revision]:
        versions = (await api.get_json("actions", "/v1/rules/versions", params={"limit": limit}))["versions"]
        return [
            Revision(
                number=int(v["version"]),
                at=when_of(v.get("created_at")),
                who=await self.who(request, v),
                rules=int(v.get("rules") or 0),
            )
            for v in versions
        ]


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.RULES_READ))
    history = History(deps)

    @r.get("/rules")
    async def playbook(request: Request, person: SignedIn = reader) -> Response:
        api = deps.api.on_behalf_of(person)
        try:
            current = await api.get_json("actions", "/v1/rules")
            newest = await history.revisions(request, api, limit=1)
        except ApiError as exc:
            raise unavailable(exc) from None
        tr = deps.pages.translator(request)
        return deps.pages.render(
            request,
            "rules.html",
            revision=current.get("revision"),
            saved_at=newest[0].at if newest else None,
            sections=sections(current, tr),
            sequences=sequence_cards(current, tr),
            editor=person.principal.can(Scope.RULES_ADMIN),
        )

    @r.get("/rules/history")
    async def rule_history(
        request: Request,
        to: Annotated[int | None, Query(alias="to", ge=1)] = None,
        from_: Annotated[int | None, Query(alias="from", ge=1)] = None,
        saved: Annotated[int | None, Query(ge=1)] = None,
        person: SignedIn = reader,
    ) -> Response:
        api = deps.api.on_behalf_of(person)
        try:
            revisions = await history.revisions(request, api)
            numbers = [v.number for v in revisions]
            new = to if to in numbers else (numbers[0] if numbers else None)
            older = [n for n in numbers if new is not None and n < new]
            old = from_ if from_ in numbers else (older[0] if older else None)
            changes = None
            if new is not None and old is not None:
                documents = [
                    await api.get_json("actions", "/v1/rules/versions/{n}", path_params={"n": str(n)})
                    for n in (old, new)
                ]
                changes = diff(*documents)
        except ApiError as exc:
            raise unavailable(exc) from None
        return deps.pages.render(
            request, "rules_history.html", revisions=revisions, old=old, new=new, changes=changes, saved=saved
        )

    _edit_routes(r, deps)
    return r


class EditPage:
    """Renders the edit form with its errors (summary at the top, each at its field) or a conflict."""

    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps

    def render(
        self,
        request: Request,
        *,
        form: RuleForm,
        creating: bool,
        errors: list[FieldError] | None = None,
        conflict: Mapping[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        found = list(errors or [])
        return self.deps.pages.render(
            request,
            "rules_edit.html",
            status=status,
            form=form,
            creating=creating,
            errors=found,
            by_field=errors_by_field(found),
            conflict=conflict,
        )


async def current_rule(api: PersonApi, rule_id: str) -> tuple[int, dict[str, Any] | None]:
    """The revision in force and this rule in it (None when it does not exist)."""
    document = await api.get_json("actions", "/v1/rules")
    rule = next((r for r in rules_of(document) if r.get("id") == rule_id), None)
    return int(document.get("revision") or 0), dict(rule) if rule is not None else None


async def conflict_of(api: PersonApi, form: RuleForm, rule_id: str) -> dict[str, Any]:
    """What someone else saved: their revision, their rule (YAML) and its fields against the form's start."""
    revision, theirs = await current_rule(api, rule_id)
    started: Any = None
    if form.revision:
        try:
            base = await api.get_json(
                "actions", "/v1/rules/versions/{n}", path_params={"n": str(form.revision)}
            )
            started = next((r for r in rules_of(base) if r.get("id") == rule_id), None)
        except ApiError:
            started = None
    return {
        "revision": revision,
        "theirs": dump_yaml(theirs) if theirs is not None else None,
        "changes": field_changes(started or {}, theirs or {}),
    }


def _edit_routes(r: APIRouter, deps: ConsoleDeps) -> None:
    editor = Depends(deps.gate.person(Scope.RULES_ADMIN))
    checked = [Depends(deps.gate.csrf)]
    page = EditPage(deps)

    @r.get("/rules/new")
    async def new_rule(request: Request, person: SignedIn = editor) -> Response:
        try:
            revision, _ = await current_rule(deps.api.on_behalf_of(person), "")
        except ApiError as exc:
            raise unavailable(exc) from None
        return page.render(request, form=RuleForm(revision=revision), creating=True)

    @r.get("/rules/{rule_id}/edit")
    async def edit_rule(
        request: Request, rule_id: Annotated[str, Path(pattern=RULE_ID)], person: SignedIn = editor
    ) -> Response:
        try:
            revision, rule = await current_rule(deps.api.on_behalf_of(person), rule_id)
        except ApiError as exc:
            raise unavailable(exc) from None
        if rule is None:
            raise not_found()
        return page.render(request, form=RuleForm.of(rule, revision=revision), creating=False)

    async def save(request: Request, person: SignedIn, form: RuleForm, *, creating: bool) -> Response:
        api = deps.api.on_behalf_of(person)
        try:
            _, original = await current_rule(api, form.rule_id)
            if creating and original is not None:
                errors = [FieldError("id", "rules.form.exists", translate=True)]
                return page.render(request, form=form, creating=True, errors=errors, status=409)
            draft = draft_rule(form, original=original)
            if draft.errors:
                return page.render(
                    request, form=form, creating=creating, errors=list(draft.errors), status=422
                )
            answer = await api.request(
                "PUT",
                "actions",
                "/v1/rules/{rule_id}",
                path_params={"rule_id": form.rule_id},
                json=draft.rule,
                headers={"If-Match": f'"{form.revision}"'} if form.revision is not None else None,
            )
            if answer.status_code == 412:
                conflict = await conflict_of(api, form, form.rule_id)
                fresh = form.at_revision(int(conflict["revision"]))
                return page.render(request, form=fresh, creating=creating, conflict=conflict, status=409)
        except ApiError as exc:
            raise unavailable(exc) from None
        if answer.status_code == 422:
            errors = rule_errors(answer.json(), rule_id=form.rule_id)
            return page.render(request, form=form, creating=creating, errors=errors, status=422)
        if answer.status_code >= 400:
            raise unavailable(ApiError(service="actions", status=answer.status_code))
        revision = int(answer.json()["revision"])
        return RedirectResponse(f"/rules/history?to={revision}&saved={revision}#diff", status_code=303)

    @r.post("/rules/new", dependencies=checked)
    async def create_rule(
        request: Request, form: Annotated[RuleFormIn, Form()], person: SignedIn = editor
    ) -> Response:
        return await save(request, person, form.to_form(), creating=True)

    @r.post("/rules/{rule_id}/edit", dependencies=checked)
    async def update_rule(
        request: Request,
        rule_id: Annotated[str, Path(pattern=RULE_ID)],
        form: Annotated[RuleFormIn, Form()],
        person: SignedIn = editor,
    ) -> Response:
        return await save(request, person, form.to_form(rule_id=rule_id), creating=False)
