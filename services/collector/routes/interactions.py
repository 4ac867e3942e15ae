"""``POST /v1/interactions``, ``/v1/interactions/batch`` and ``/v1/webhooks/{provider}``: what happened to
customers, the input surveys start from. Servers only (a secret key or a token with interactions:write);
same intake as ratings: claim the id, publish with acks=all, answer 202.
"""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from services.collector.deps import CollectorDeps
from services.collector.helpdesks import HELPDESKS, HelpdeskPayloadError, Ignored
from services.collector.intake import (
    AnyInteractionSubmission,
    IntakeUnavailable,
    InteractionIntake,
    Outcome,
    Verdict,
)
from services.collector.interactions import InteractionId, InteractionIn, InteractionRejected
from services.collector.ports import Principal
from services.collector.problems import ProblemError, problem_example, unavailable
from services.collector.routes.fastpath import fast_path
from services.collector.routes.guard import _api_key, _bearer, source_guard
from shared.http import field_path
from shared.identity.scopes import Scope

INTERACTION_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No key, or an unknown, revoked or expired one",
        "content": problem_example(401, "Unauthorized", "unauthorized", "a source key is required", None),
    },
    403: {
        "description": "A publishable key, a disabled source, or a token without interactions:write",
        "content": problem_example(
            403, "Forbidden", "forbidden", "this credential lacks the scope interactions:write", None
        ),
    },
    409: {
        "description": "The interaction_id was used before with different content",
        "content": problem_example(
            409,
            "Conflict",
            "idempotency-conflict",
            "interaction_id 'order-5512-delivered' was already used for a different interaction",
            "interaction_id",
        ),
    },
    422: {
        "description": "Invalid interaction; `field` names the input at fault",
        "content": problem_example(
            422, "Invalid interaction", "validation", "type: type 'Order Delivered' must be ...", "type"
        ),
    },
    503: {
        "description": "Broker or database unavailable; nothing was recorded; retry after `Retry-After`",
        "content": problem_example(
            503, "Service Unavailable", "broker-unavailable", "the broker is unavailable", None
        ),
    },
}


class InteractionAccepted(BaseModel):
    interaction_id: str
    status: Literal["accepted"] = "accepted"


class InteractionBatchIn(BaseModel):
    interactions: list[dict[str, Any]] = Field(
        min_length=1,
        json_schema_extra={"items": {"$ref": "#/components/schemas/InteractionIn"}},
        description="Up to CSAT_MAX_BATCH_ITEMS (500) interactions; each is validated on its own",
    )


class InteractionItemResult(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    interaction_id: str | None = None
    replayed: bool | None = None
    errors: list[dict[str, str]] | None = None


class InteractionBatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[InteractionItemResult]


IdempotencyKey = Annotated[
    InteractionId | None,
    Header(alias="Idempotency-Key", description="Becomes the interaction_id (batch: `<key>-<index>`)"),
]


def invalid_interaction(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "Invalid interaction",
        detail=f"{field}: {message}",
        type_="https://csat.dev/problems/validation",
        field=field,
        message=message,
    )


_INTERACTION_ID = TypeAdapter(InteractionId)


_Guard = Callable[..., Awaitable[Principal]]


def add_routes(routes: APIRouter, deps: CollectorDeps) -> None:
    """Register the interaction routes on ``routes`` (bootstrap passes the app's own router: the fast
    path patches the routes the app dispatches with); a publishable key is refused (interactions start
    surveys)."""
    guard = source_guard(deps, scope=Scope.INTERACTIONS_WRITE, secret_only=True)
    _single(routes, deps, guard)
    _batch(routes, deps, guard)
    _webhooks(routes, deps, guard)


def _single(routes: APIRouter, deps: CollectorDeps, guard: _Guard) -> None:
    """``POST /v1/interactions``, with its fast path."""
    Guard = Annotated[Principal, Depends(guard)]
    intake = deps.interactions

    @routes.post(
        "/v1/interactions",
        tags=["interactions"],
        status_code=202,
        response_model=InteractionAccepted,
        responses={**INTERACTION_PROBLEMS, 202: {"description": "Accepted: the broker has it"}},
        summary="Record one interaction (a ticket solved, an order delivered...)",
    )
    async def post_interaction(
        body: InteractionIn, principal: Guard, idempotency_key: IdempotencyKey = None
    ) -> Any:
        if idempotency_key and body.interaction_id and idempotency_key != body.interaction_id:
            raise invalid_interaction(
                "interaction_id", "interaction_id and the Idempotency-Key header differ"
            )
        submission = _prepare(intake, body, principal=principal, key=idempotency_key, now=datetime.now(UTC))
        (verdict,) = await _submit(deps, intake, [submission])
        return _answer(verdict)

    async def fast_interaction(request: Request, parsed: dict[str, Any], key: str | None) -> Response | None:
        if _read_apart(parsed):
            return None
        try:
            body = InteractionIn.model_validate(parsed)
        except ValidationError:
            return None
        principal = await guard(request, await _bearer(request), await _api_key(request))
        answer: Response = await post_interaction(body, principal, key)
        return answer

    if deps.settings.fast_path:
        fast_path(routes, "/v1/interactions", fast_interaction, key=_INTERACTION_ID)


def _batch(routes: APIRouter, deps: CollectorDeps, guard: _Guard) -> None:
    """``POST /v1/interactions/batch``, with its fast path: one result per item, in order."""
    Guard = Annotated[Principal, Depends(guard)]
    intake = deps.interactions

    @routes.post(
        "/v1/interactions/batch",
        tags=["interactions"],
        status_code=202,
        response_model=InteractionBatchResult,
        responses={**INTERACTION_PROBLEMS, 202: {"description": "One result per item, in order"}},
        summary="Record many interactions; one result per item",
    )
    async def post_batch(
        request: Request, body: InteractionBatchIn, principal: Guard, idempotency_key: IdempotencyKey = None
    ) -> Any:
        limit = deps.settings.max_batch_items
        if len(body.interactions) > limit:
            raise invalid_interaction("interactions", f"at most {limit} items per batch")
        deps.limits.check_ip(
            request.scope, source=principal.source.source_id, cost=len(body.interactions) - 1
        )
        deps.limits.check_key(principal, cost=len(body.interactions) - 1)
        now = datetime.now(UTC)
        # Plain dicts shaped as ``InteractionItemResult`` (the declared schema, None fields left out),
        # written once with orjson, as the ratings' batch does: a model per item cost more than its checks.
        results: list[dict[str, Any]] = []
        submissions: list[AnyInteractionSubmission] = []
        pending: list[dict[str, Any]] = []  # the results of ``submissions``, in the same order
        for index, raw in enumerate(body.interactions):
            checked = _batch_item(intake, raw, index=index, key=idempotency_key, principal=principal, now=now)
            if isinstance(checked, dict):
                results.append(checked)
                continue
            submissions.append(checked)
            pending.append({"index": index, "status": "accepted", "interaction_id": checked.interaction_id})
            results.append(pending[-1])
        if submissions:
            for result, verdict in zip(pending, await _submit(deps, intake, submissions), strict=True):
                _settle(result, verdict)
        accepted = sum(1 for r in results if r["status"] == "accepted")
        out = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        return Response(orjson.dumps(out), status_code=202, media_type="application/json")

    async def fast_batch(request: Request, parsed: dict[str, Any], key: str | None) -> Response | None:
        try:
            body = InteractionBatchIn.model_validate(parsed)
        except ValidationError:
            return None
        if any(isinstance(item, dict) and _read_apart(item) for item in body.interactions):
            return None
        principal = await guard(request, await _bearer(request), await _api_key(request))
        answer: Response = await post_batch(request, body, principal, key)
        return answer

    if deps.settings.fast_path:
        fast_path(routes, "/v1/interactions/batch", fast_batch, key=_INTERACTION_ID)


def _webhooks(routes: APIRouter, deps: CollectorDeps, guard: _Guard) -> None:
    """``POST /v1/webhooks/{provider}``: a helpdesk's event mapped to an interaction."""
    Guard = Annotated[Principal, Depends(guard)]
    intake = deps.interactions

    @routes.post(
        "/v1/webhooks/{provider}",
        tags=["interactions"],
        responses={
            **INTERACTION_PROBLEMS,
            200: {"description": "A well-formed event no survey follows: ignored, nothing published"},
            202: {"description": "Mapped to an interaction the broker has"},
            404: {"description": "Unknown provider"},
        },
        summary="A helpdesk's webhook (zendesk, freshdesk, intercom) mapped to an interaction",
    )
    async def post_webhook(provider: str, request: Request, principal: Guard) -> Any:
        mapper = HELPDESKS.get(provider)
        if mapper is None:
            raise ProblemError(
                404,
                "Not Found",
                detail=f"unknown provider; one of {', '.join(sorted(HELPDESKS))}",
                type_="https://csat.dev/problems/not-found",
                field="provider",
            )
        try:
            payload = await request.json()
        except ValueError as exc:
            raise invalid_interaction("body", "the body is not JSON") from exc
        if not isinstance(payload, dict):
            raise invalid_interaction("body", "the body must be a JSON object")
        try:
            mapped = mapper(payload)
        except HelpdeskPayloadError as exc:
            raise invalid_interaction(exc.field, exc.message) from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            raise invalid_interaction(
                field_path(first["loc"]) or "body", str(first["msg"]).removeprefix("Value error, ")
            ) from exc
        if isinstance(mapped, Ignored):
            return JSONResponse({"status": "ignored", "reason": mapped.reason}, status_code=200)
        submission = _prepare(
            intake, mapped, principal=principal, key=None, now=datetime.now(UTC), origin=provider
        )
        (verdict,) = await _submit(deps, intake, [submission])
        return _answer(verdict)


def _read_apart(item: dict[str, Any]) -> bool:
    """An attribute orjson (the fast path's parser) reads otherwise than FastAPI's: an integer beyond 64
    bits becomes a float there. Such a body goes to FastAPI's handler, which refuses it at its field."""
    attributes = item.get("attributes")
    if not isinstance(attributes, dict):
        return False
    return any(isinstance(v, float) and v.is_integer() and abs(v) >= _INT_LIMIT for v in attributes.values())


_INT_LIMIT = 2.0**63


def _prepare(
    intake: InteractionIntake,
    body: InteractionIn,
    *,
    principal: Principal,
    key: str | None,
    now: datetime,
    origin: str | None = None,
) -> AnyInteractionSubmission:
    try:
        return intake.prepare_interaction_encoded(
            body, received_at=now, source=principal.source.source_id, interaction_id=key, origin=origin
        )
    except InteractionRejected as exc:
        raise invalid_interaction(exc.field, exc.message) from exc


async def _submit(
    deps: CollectorDeps, intake: InteractionIntake, submissions: list[AnyInteractionSubmission]
) -> list[Verdict]:
    try:
        return await intake.submit_interactions(submissions)
    except IntakeUnavailable as exc:
        raise unavailable(exc.what, retry_after_s=deps.settings.retry_after_s) from exc


def _refusal(verdict: Verdict) -> str:
    if verdict.outcome is Outcome.CONFLICT:
        return f"interaction_id {verdict.rating_id!r} was already used for a different interaction"
    return f"interaction_id {verdict.rating_id!r} is being recorded by a concurrent request; retry shortly"


def _answer(verdict: Verdict) -> Response:
    if verdict.recorded:
        headers = {"Idempotent-Replayed": "true"} if verdict.replayed else None
        body = {"interaction_id": verdict.rating_id, "status": "accepted"}
        # orjson: the same compact bytes as JSONResponse's json.dumps, in a fraction of the time.
        return Response(orjson.dumps(body), status_code=202, headers=headers, media_type="application/json")
    conflict = verdict.outcome is Outcome.CONFLICT
    raise ProblemError(
        409,
        "Conflict",
        detail=_refusal(verdict),
        type_="https://csat.dev/problems/" + ("idempotency-conflict" if conflict else "in-progress"),
        field="interaction_id",
        headers=None if conflict else {"Retry-After": "1"},
    )


def _batch_item(
    intake: InteractionIntake,
    raw: dict[str, Any],
    *,
    index: int,
    key: str | None,
    principal: Principal,
    now: datetime,
) -> AnyInteractionSubmission | dict[str, Any]:
    """One batch item validated on its own: its submission, or its rejection (an
    ``InteractionItemResult`` as a dict) naming each field."""
    prefix = f"interactions[{index}]"
    try:
        item = InteractionIn.model_validate(raw)
        derived = f"{key}-{index}" if key and not item.interaction_id else None
        if derived is not None and len(derived) > 128:
            raise InteractionRejected("interaction_id", "Idempotency-Key too long to derive item ids")
        return intake.prepare_interaction_encoded(
            item, received_at=now, source=principal.source.source_id, interaction_id=derived
        )
    except ValidationError as exc:
        errors = [
            {
                "field": f"{prefix}.{field_path(e['loc'])}" if e["loc"] else prefix,
                "message": str(e["msg"]).removeprefix("Value error, "),
            }
            for e in exc.errors()
        ]
    except InteractionRejected as exc:
        errors = [{"field": f"{prefix}.{exc.field}", "message": exc.message}]
    return {"index": index, "status": "rejected", "errors": errors}


def _settle(result: dict[str, Any], verdict: Verdict) -> None:
    """A valid item's final result: accepted (perhaps replayed), or refused for its interaction_id."""
    if verdict.recorded:
        if verdict.replayed:
            result["replayed"] = True
        return
    del result["interaction_id"]
    result["status"] = "rejected"
    result["errors"] = [
        {"field": f"interactions[{result['index']}].interaction_id", "message": _refusal(verdict)}
    ]
