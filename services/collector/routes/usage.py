"""``POST /v1/usage``: batches of usage observations from servers (secret key or a token with usage:write)."""

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, ValidationError

from services.collector.deps import CollectorDeps
from services.collector.ports import Principal
from services.collector.problems import ProblemError, problem_example, unavailable
from services.collector.routes.guard import source_guard
from services.collector.usage import UsageIn, UsageRejected, field_errors, observe, usage_fingerprint
from services.collector.usage_intake import UsageOutcome, UsageSubmission, UsageUnavailable
from shared.identity.scopes import Scope

USAGE_PATHS = frozenset({"/v1/usage"})

USAGE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No key, or an unknown, revoked or expired one",
        "content": problem_example(401, "Unauthorized", "unauthorized", "a source API key is required", None),
    },
    403: {
        "description": "A publishable key (usage is stated by servers only), a disabled source, or a token "
        "without usage:write",
        "content": problem_example(
            403, "Forbidden", "forbidden", "this credential lacks the scope usage:write", None
        ),
    },
    413: {
        "description": "Body larger than CSAT_MAX_BODY_BYTES",
        "content": problem_example(
            413, "Payload Too Large", "body-too-large", "the request body exceeds 1048576 bytes", "body"
        ),
    },
    422: {
        "description": "The batch itself is invalid (empty, too many items); `field` names the input",
        "content": problem_example(
            422, "Invalid usage", "validation", "observations: at most 500 items per batch", "observations"
        ),
    },
    429: {
        "description": "Too many requests for this key or client IP; retry after `Retry-After` seconds",
        "content": problem_example(
            429, "Too Many Requests", "rate-limited", "rate limit for this key exceeded", None
        ),
    },
    503: {
        "description": "Broker unavailable; nothing was recorded; retry after `Retry-After`",
        "content": problem_example(
            503,
            "Service Unavailable",
            "broker-unavailable",
            "the broker is unavailable; nothing was recorded, retry later",
            None,
        ),
    },
}


class UsageBatchIn(BaseModel):
    observations: list[dict[str, Any]] = Field(
        min_length=1,
        json_schema_extra={"items": {"$ref": "#/components/schemas/UsageIn"}},
        description="Up to CSAT_MAX_BATCH_ITEMS (500) observations; each is validated on its own",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [{"observations": UsageIn.model_config["json_schema_extra"]["examples"]}]  # type: ignore[index]
        }
    }


class UsageItemResult(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    observation_id: str | None = None
    replayed: bool | None = Field(default=None, description="true: accepted by an earlier request")
    errors: list[dict[str, str]] | None = None


class UsageBatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[UsageItemResult]


UsageKey = Annotated[
    Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,119}$")] | None,
    Header(
        alias="Idempotency-Key",
        description="Client key for safe retries; items without observation_id get `<key>-<index>`",
    ),
]

_REFUSALS = {
    UsageOutcome.CONFLICT: "observation_id {!r} was already used for a different observation",
    UsageOutcome.IN_PROGRESS: "observation_id {!r} is being recorded by a concurrent request; retry shortly",
}


def router(deps: CollectorDeps) -> APIRouter:
    """The usage route; observations go to ``csat.usage.v1`` once the broker acknowledged them."""
    routes = APIRouter(tags=["usage"])
    Guard = Annotated[Principal, Depends(source_guard(deps, scope=Scope.USAGE_WRITE, secret_only=True))]

    @routes.post(
        "/v1/usage",
        status_code=202,
        response_model=UsageBatchResult,
        responses={**USAGE_PROBLEMS, 202: {"description": "One result per item, in order"}},
        summary="Submit usage observations (logins, features used, seats...); one result per item",
        description="Valid items are published together (one acks=all round trip); invalid ones are "
        "listed with the field at fault. A retry with the same observation_id (or, without one, the same "
        "content) is counted once. A 503 means no item was recorded.",
    )
    async def post_usage(
        request: Request, body: UsageBatchIn, principal: Guard, idempotency_key: UsageKey = None
    ) -> Any:
        source = principal.source.source_id
        limit = deps.settings.max_batch_items
        if len(body.observations) > limit:
            raise ProblemError(
                422,
                "Invalid usage",
                detail=f"observations: at most {limit} items per batch",
                type_="https://csat.dev/problems/validation",
                field="observations",
                message=f"at most {limit} items per batch",
            )
        deps.limits.check_ip(request.scope, source=source, cost=len(body.observations) - 1)
        deps.limits.check_key(principal, cost=len(body.observations) - 1)
        now = datetime.now(UTC)
        results: list[UsageItemResult] = []
        submissions: list[UsageSubmission] = []
        pending: list[UsageItemResult] = []
        for index, raw in enumerate(body.observations):
            checked = _item(raw, index=index, key=idempotency_key, source=source, now=now)
            if isinstance(checked, UsageItemResult):
                results.append(checked)
                continue
            submissions.append(checked)
            pending.append(
                UsageItemResult(index=index, status="accepted", observation_id=checked.event.observation_id)
            )
            results.append(pending[-1])
        if submissions:
            try:
                outcomes = await deps.usage.submit(submissions)
            except UsageUnavailable as exc:
                raise unavailable(exc.what, retry_after_s=deps.settings.retry_after_s) from exc
            for result, outcome in zip(pending, outcomes, strict=True):
                _settle(result, outcome)
        accepted = sum(1 for r in results if r.status == "accepted")
        out = UsageBatchResult(accepted=accepted, rejected=len(results) - accepted, results=results)
        return JSONResponse(out.model_dump(exclude_none=True), status_code=202)

    return routes


def _item(
    raw: dict[str, Any], *, index: int, key: str | None, source: str, now: datetime
) -> UsageSubmission | UsageItemResult:
    # Not counted in csat_ratings_rejected_total: that metric is about ratings.
    """One observation validated on its own: its submission, or its rejection naming each field."""
    prefix = f"observations[{index}]"
    try:
        item = UsageIn.model_validate(raw)
        derived = f"{key}-{index}" if key and not item.observation_id else None
        event = observe(item, received_at=now, observation_id=derived, source=source)
        return UsageSubmission(event=event, source_id=source, fingerprint=usage_fingerprint(item))
    except ValidationError as exc:
        errors = [{"field": f"{prefix}.{e.field}", "message": e.message} for e in field_errors(exc)]
    except UsageRejected as exc:
        errors = [{"field": f"{prefix}.{exc.field}", "message": exc.message}]
    return UsageItemResult(index=index, status="rejected", errors=errors)


def _settle(result: UsageItemResult, outcome: UsageOutcome) -> None:
    if outcome is UsageOutcome.ACCEPTED:
        return
    if outcome is UsageOutcome.REPLAYED:
        result.replayed = True
        return
    result.status = "rejected"
    result.errors = [
        {
            "field": f"observations[{result.index}].observation_id",
            "message": _REFUSALS[outcome].format(result.observation_id),
        }
    ]
    result.observation_id = None
