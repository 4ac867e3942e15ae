"""The Rules view's dry run: pick, type or paste a rating (and optionally unsaved rules), see which rules
fire and every message that would go out, rendered in each language by the notifier's own templates.

Nothing is sent or stored: the actions service evaluates through a read-only transaction and the
notifier only renders. People below admin never see a customer's address: the actions service hides
it for them, and this page hides it again before rendering (``ruleforms.hide_addresses``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from services.console.apiclient import ApiError, PersonApi
from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.playbook import action_title, outcome_text
from services.console.routes.rules import unavailable, when_of
from services.console.ruleforms import (
    DryRunForm,
    FieldError,
    dry_run_body,
    dry_run_errors,
    errors_by_field,
    hide_addresses,
)
from services.console.rulewords import Words, duration, value_text
from shared.identity.scopes import Role, Scope
from shared.vocabulary import LOCALES

METRICS = ("csat", "nps", "ces")
SCALES = ("1-5", "1-3", "1-10", "yes-no", "0-10", "1-7")


class DryRunFormIn(BaseModel):
    """The posted dry-run form, bounded; checkboxes send nothing when unticked."""

    metric: str = Field(default="csat", max_length=10)
    scale: str = Field(default="", max_length=20)
    score: str = Field(default="", max_length=40)
    customer: str = Field(default="", max_length=200)
    locale: str = Field(default="en", max_length=10)
    email: str = Field(default="", max_length=320)
    phone: str = Field(default="", max_length=40)
    segment: str = Field(default="", max_length=4000)
    touchpoint: str = Field(default="", max_length=100)
    comment: str = Field(default="", max_length=5000)
    tier: str = Field(default="", max_length=40)
    value: str = Field(default="", max_length=40)
    contact: bool = False
    review: bool = False
    pasted: str = Field(default="", max_length=20_000)
    proposed: str = Field(default="", max_length=100_000)
    rating_id: str = Field(default="", max_length=128)
    occurred_at: str = Field(default="", max_length=64)
    themes: str = Field(default="", max_length=2000)
    tone: str = Field(default="", max_length=10)

    def to_form(self) -> DryRunForm:
        return DryRunForm(**self.model_dump())


@dataclass(frozen=True, slots=True)
class Preview:
    locale: str
    sent: bool  # the message's own language: the text the customer (or staff) would get
    subject: str | None
    body: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class MessageView:
    message: Mapping[str, Any]
    previews: tuple[Preview, ...]


def locales_for(message: Mapping[str, Any]) -> list[str]:
    own = str(message.get("locale") or LOCALES[0])
    return [own] + [code for code in LOCALES if code != own]


async def previews(api: PersonApi, messages: Sequence[Mapping[str, Any]]) -> list[MessageView] | None:
    """Each message rendered in every language (its own first); None when the notifier cannot answer."""
    asked = [
        {
            "template": m["template"],
            "locale": locale,
            "channel": m["channel"],
            "transactional": bool(m.get("transactional")),
            "context": m.get("context") or {},
        }
        for m in messages
        for locale in locales_for(m)
    ]
    if not asked:
        return []
    try:
        answer = await api.send_json("POST", "notifier", "/v1/templates/preview", json={"messages": asked})
    except ApiError:
        return None
    rendered = iter(answer["previews"])
    views = []
    for m in messages:
        own = locales_for(m)
        found = [next(rendered) for _ in own]
        views.append(
            MessageView(
                message=m,
                previews=tuple(
                    Preview(loc, loc == own[0], p.get("subject"), p.get("body"), p.get("error"))
                    for loc, p in zip(own, found, strict=True)
                ),
            )
        )
    return views


def fact_text(fact: str, value: Any, words: Words) -> str:
    """A fact's value in the facts table ("—" when the rating did not say)."""
    if value is None or value == []:
        return "—"
    if isinstance(value, list):
        return ", ".join(value_text(fact, v, words) for v in value)
    return value_text(fact, value, words)


class DryRunPage:
    def __init__(self, deps: ConsoleDeps) -> None:
        self.deps = deps

    async def render(
        self,
        request: Request,
        person: SignedIn,
        *,
        form: DryRunForm,
        picked: Mapping[str, Any] | None = None,
        errors: Sequence[FieldError] = (),
        result: Mapping[str, Any] | None = None,
        messages: list[MessageView] | None = None,
        status: int = 200,
    ) -> Response:
        api = self.deps.api.on_behalf_of(person)
        try:
            recent = await api.get_json("actions", "/v1/rules/dry-run/ratings", params={"limit": 20})
        except ApiError as exc:
            raise unavailable(exc) from None
        tr = self.deps.pages.translator(request)
        return self.deps.pages.render(
            request,
            "rules_dry_run.html",
            status=status,
            form=form,
            recent=recent,
            picked=picked,
            errors=list(errors),
            by_field=errors_by_field(errors),
            result=result,
            messages=messages,
            metrics=METRICS,
            scales=SCALES,
            locales=LOCALES,
            span=lambda seconds: duration(float(seconds), tr),
            fact_value=lambda fact, value: fact_text(fact, value, tr),
            action_title=lambda kind: action_title(str(kind), tr),
            outcome_text=lambda outcome: outcome_text(str(outcome), tr),
            when_of=when_of,
        )


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.RULES_READ))
    page = DryRunPage(deps)

    @r.get("/rules/dry-run")
    async def dry_run_page(
        request: Request,
        pick: Annotated[str | None, Query(max_length=128)] = None,
        person: SignedIn = reader,
    ) -> Response:
        form, picked = DryRunForm(), None
        if pick:
            api = deps.api.on_behalf_of(person)
            try:
                recent = await api.get_json("actions", "/v1/rules/dry-run/ratings", params={"limit": 20})
            except ApiError as exc:
                raise unavailable(exc) from None
            picked = next((p["rating"] for p in recent if p["rating"].get("rating_id") == pick), None)
            form = DryRunForm.of(picked) if picked else form
        return await page.render(request, person, form=form, picked=picked)

    @r.post("/rules/dry-run", dependencies=[Depends(deps.gate.csrf)])
    async def run_dry_run(
        request: Request, posted: Annotated[DryRunFormIn, Form()], person: SignedIn = reader
    ) -> Response:
        form = posted.to_form()
        built = dry_run_body(form)
        if built.errors:
            return await page.render(request, person, form=form, errors=built.errors, status=422)
        api = deps.api.on_behalf_of(person)
        try:
            answer = await api.request("POST", "actions", "/v1/rules/dry-run", json=built.body)
        except ApiError as exc:
            raise unavailable(exc) from None
        if answer.status_code in (404, 422):
            problem = answer.json() if answer.content else {}
            errors = dry_run_errors(problem, pasted=built.pasted)
            return await page.render(request, person, form=form, errors=errors, status=422)
        if answer.status_code >= 400:
            raise unavailable(ApiError(service="actions", status=answer.status_code))
        result: dict[str, Any] = answer.json()
        if person.principal.role is not Role.ADMIN:
            result = hide_addresses(result)
        messages = await previews(api, result["messages"])
        return await page.render(request, person, form=form, result=result, messages=messages)

    return r
