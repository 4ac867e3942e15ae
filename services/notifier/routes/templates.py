"""Message previews: a template rendered with a given context, exactly as a send would render it, for
whoever reads the rules (``rules:read``: the console's dry run). Pure rendering: nothing is stored,
queued or sent.

Messages to customers carry an unsubscribe link when sent; a preview shows where it goes with a
placeholder token (``/u/preview``), never a working one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.notifier.deps import NotifierDeps
from services.notifier.templating import TemplateBroken, TemplateMissing
from shared.events import Channel
from shared.identity.scopes import Scope
from shared.vocabulary import LOCALE_PATTERN, TEMPLATE_NAMES

MAX_PREVIEWS = 100


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: str
    locale: Annotated[str, StringConstraints(pattern=LOCALE_PATTERN)] = "en"
    channel: Channel = Channel.EMAIL
    transactional: bool = Field(
        default=True, description="False for messages to customers (unsubscribe link)"
    )
    context: dict[str, Any] = Field(default_factory=dict, description="What the template reads, as requested")

    @field_validator("template")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in TEMPLATE_NAMES:
            raise ValueError(f"unknown template {value!r}; one of {sorted(TEMPLATE_NAMES)}")
        return value


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[PreviewIn] = Field(min_length=1, max_length=MAX_PREVIEWS)


class PreviewOut(BaseModel):
    template: str
    channel: str
    locale: str = Field(description="The locale the text is in (English when the asked one has no template)")
    variant: str | None = Field(
        description="The channel's own variant (e.g. sms), or null for the general text"
    )
    subject: str | None
    body: str | None
    error: str | None = Field(default=None, description="Why this one could not be rendered")


class PreviewResponse(BaseModel):
    previews: list[PreviewOut]


def router(deps: NotifierDeps) -> APIRouter:
    routes = APIRouter()
    admin = [Depends(deps.auth.require(Scope.RULES_READ))]
    unsubscribe_placeholder = f"{deps.public_base_url.rstrip('/')}/u/preview"

    @routes.post(
        "/v1/templates/preview",
        tags=["templates"],
        dependencies=admin,
        response_model=PreviewResponse,
        summary="Render messages as they would be sent, without sending or storing anything",
    )
    async def preview(body: PreviewRequest) -> Any:
        out: list[PreviewOut] = []
        for item in body.messages:
            context = dict(item.context)
            if not item.transactional:
                context["unsubscribe_url"] = unsubscribe_placeholder
            try:
                rendered = deps.templates.render(
                    item.template, item.locale, context, channel=item.channel.value
                )
            except (TemplateMissing, TemplateBroken) as exc:
                out.append(
                    PreviewOut(
                        template=item.template,
                        channel=item.channel.value,
                        locale=item.locale,
                        variant=None,
                        subject=None,
                        body=None,
                        error=str(exc),
                    )
                )
                continue
            out.append(
                PreviewOut(
                    template=item.template,
                    channel=item.channel.value,
                    locale=rendered.locale,
                    variant=rendered.variant,
                    subject=rendered.subject,
                    body=rendered.body,
                )
            )
        return PreviewResponse(previews=out)

    return routes
