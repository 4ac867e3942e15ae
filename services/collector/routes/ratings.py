"""``POST /v1/ratings`` and ``POST /v1/ratings/batch``: ratings from clients holding a source key."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from services.collector import metrics
from services.collector.deps import CollectorDeps
from services.collector.domain import RatingId, RatingIn, RatingRejected, Trust
from services.collector.intake import AnySubmission, Intake, IntakeUnavailable, Outcome, Verdict
from services.collector.ports import Principal
from services.collector.problems import ProblemError, invalid_rating, problem_example, unavailable
from services.collector.routes.fastpath import fast_path
from services.collector.routes.guard import _api_key, _bearer, source_guard, trust_of
from shared.http import field_path

#: The paths a browser may post to (CORS per source) and whose invalid bodies count as rejected ratings.
RATING_PATHS = frozenset({"/v1/ratings", "/v1/ratings/batch"})

RATING_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No key, or an unknown, revoked or expired one (or an API token that is)",
        "content": problem_example(401, "Unauthorized", "unauthorized", "a source API key is required", None),
    },
    403: {
        "description": "The source is disabled, the browser origin is not one of the source's, or an API "
        "token lacks ratings:write",
        "content": problem_example(
            403, "Forbidden", "origin-not-allowed", "origin not allowed for this source", "Origin"
        ),
    },
    409: {
        "description": "The rating_id / Idempotency-Key was used before with a different body, "
        "or a concurrent attempt with it has not finished (then with Retry-After)",
        "content": problem_example(
            409,
            "Conflict",
            "idempotency-conflict",
            "rating_id 'chat-8812' was already used for a different rating",
            "rating_id",
        ),
    },
    413: {
        "description": "Body larger than CSAT_MAX_BODY_BYTES; refused before it is read",
        "content": problem_example(
            413, "Payload Too Large", "body-too-large", "the request body exceeds 1048576 bytes", "body"
        ),
    },
    422: {
        "description": "Invalid rating; `field` names the input at fault",
        "content": problem_example(
            422, "Invalid rating", "validation", "score: score 9 is outside scale 1-5 (1 to 5)", "score"
        ),
    },
    429: {
        "description": "Too many requests for this key or client IP; retry after `Retry-After` seconds",
        "content": problem_example(
            429, "Too Many Requests", "rate-limited", "rate limit for this key exceeded", None
        ),
    },
    503: {
        "description": "Broker or database unavailable; nothing was recorded; retry after `Retry-After`",
        "content": problem_example(
            503,
            "Service Unavailable",
            "broker-unavailable",
            "the broker is unavailable; nothing was recorded, retry later",
            None,
        ),
    },
}

RATING_EXAMPLES: dict[str, dict[str, Any]] = {
    "csat-stars": {
        "summary": "CSAT on 1-5 stars, with context",
        "value": RatingIn.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index] # the example declared on the model
    },
    "likert-label": {
        "summary": "A Likert label instead of a number",
        "value": {"metric": "csat", "scale": "1-5", "score": "very satisfied", "customer": {"id": "cus_7"}},
    },
    "nps": {
        "summary": "NPS 0-10",
        "value": {"metric": "nps", "score": 9, "customer": {"id": "cus_8"}},
    },
    "ces-effort": {
        "summary": "CES, the 1-5 'how much effort' variant (lower is easier)",
        "value": {"metric": "ces", "scale": "1-5", "score": 2, "customer": {"id": "c9"}},
    },
    "smileys": {
        "summary": "Three smileys",
        "value": {"metric": "csat", "scale": "smileys", "score": "happy", "customer": {"id": "c"}},
    },
}


class Accepted(BaseModel):
    rating_id: str
    status: Literal["accepted"] = "accepted"

    model_config = {"json_schema_extra": {"examples": [{"rating_id": "chat-8812", "status": "accepted"}]}}


class BatchIn(BaseModel):
    ratings: list[dict[str, Any]] = Field(
        min_length=1,
        json_schema_extra={"items": {"$ref": "#/components/schemas/RatingIn"}},
        description="Up to CSAT_MAX_BATCH_ITEMS (500) ratings; each is validated on its own",
    )

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "ratings": [
                        {
                            "rating_id": "order-1001",
                            "metric": "csat",
                            "scale": "1-5",
                            "score": 5,
                            "customer": {"id": "cus_1"},
                            "segment": {"store": "paris-1"},
                        },
                        {
                            "rating_id": "order-1002",
                            "metric": "nps",
                            "score": 4,
                            "customer": {"id": "cus_2"},
                        },
                    ]
                }
            ]
        }
    }


class ItemResult(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    rating_id: str | None = None
    replayed: bool | None = Field(default=None, description="true: accepted by an earlier request")
    errors: list[dict[str, str]] | None = None


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[ItemResult]

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "accepted": 1,
                    "rejected": 1,
                    "results": [
                        {"index": 0, "status": "accepted", "rating_id": "order-1001"},
                        {
                            "index": 1,
                            "status": "rejected",
                            "errors": [
                                {"field": "ratings[1].score", "message": "score 11 is outside scale 0-10"}
                            ],
                        },
                    ],
                }
            ]
        }
    }


IdempotencyKey = Annotated[
    RatingId | None,
    Header(
        alias="Idempotency-Key",
        description="Client key for safe retries; becomes the rating_id (batch: `<key>-<index>` "
        "for items without one)",
    ),
]


_Guard = Callable[..., Awaitable[Principal]]


def add_routes(routes: APIRouter, deps: CollectorDeps) -> None:
    """Register both rating routes on ``routes`` (bootstrap passes the app's own router: the hot path;
    the fast path patches the routes the app dispatches with)."""
    guard = source_guard(deps)
    _single(routes, deps, guard)
    _batch(routes, deps, guard)


def _single(routes: APIRouter, deps: CollectorDeps, guard: _Guard) -> None:
    """``POST /v1/ratings``, with its fast path."""
    Guard = Annotated[Principal, Depends(guard)]

    @routes.post(
        "/v1/ratings",
        status_code=202,
        response_model=Accepted,
        responses={
            **RATING_PROBLEMS,
            202: {
                "description": "Accepted: the broker has it (a replay answers `Idempotent-Replayed: true`)"
            },
        },
        tags=["ratings"],
        summary="Submit one rating",
        openapi_extra={"requestBody": {"content": {"application/json": {"examples": RATING_EXAMPLES}}}},
    )
    async def post_rating(body: RatingIn, principal: Guard, idempotency_key: IdempotencyKey = None) -> Any:
        source = principal.source.source_id
        if idempotency_key and body.rating_id and idempotency_key != body.rating_id:
            raise invalid_rating("rating_id", "rating_id and the Idempotency-Key header differ", source)
        now = datetime.now(UTC)
        try:
            submission = deps.intake.prepare_encoded(
                body,
                received_at=now,
                source=source,
                rating_id=idempotency_key,
                keyed=bool(body.rating_id or idempotency_key),
                trust=trust_of(deps, principal, now=now),
            )
        except RatingRejected as exc:
            raise invalid_rating(exc.field, exc.message, source) from exc
        (verdict,) = await _submit(deps, [submission])
        return _answer(verdict)

    async def fast_rating(request: Request, parsed: dict[str, Any], key: str | None) -> Response | None:
        try:
            body = RatingIn.model_validate(parsed)
        except ValidationError:
            return None
        principal = await guard(request, await _bearer(request), await _api_key(request))
        answer: Response = await post_rating(body, principal, key)
        return answer

    if deps.settings.fast_path:
        fast_path(routes, "/v1/ratings", fast_rating, key=_RATING_ID)


def _batch(routes: APIRouter, deps: CollectorDeps, guard: _Guard) -> None:
    """``POST /v1/ratings/batch``, with its fast path: one result per item, in order."""
    Guard = Annotated[Principal, Depends(guard)]

    @routes.post(
        "/v1/ratings/batch",
        status_code=202,
        response_model=BatchResult,
        responses={**RATING_PROBLEMS, 202: {"description": "One result per item, in order"}},
        tags=["ratings"],
        summary="Submit many ratings; one result per item",
        description="Valid items are published together (one acks=all round trip); invalid ones are "
        "listed with the field at fault. A 503 means no item was recorded.",
    )
    async def post_batch(
        request: Request, body: BatchIn, principal: Guard, idempotency_key: IdempotencyKey = None
    ) -> Any:
        source = principal.source.source_id
        limit = deps.settings.max_batch_items
        if len(body.ratings) > limit:
            raise invalid_rating("ratings", f"at most {limit} items per batch", source)
        # The guard charged the request one rating; each further item costs one more.
        deps.limits.check_ip(request.scope, source=source, cost=len(body.ratings) - 1)
        deps.limits.check_key(principal, cost=len(body.ratings) - 1)
        now = datetime.now(UTC)
        trust = trust_of(deps, principal, now=now)
        # Plain dicts shaped as ``ItemResult`` (the declared schema), written once with orjson: a
        # model per item and the standard library's encoder cost more than the item's own checks.
        results: list[dict[str, Any]] = []
        submissions: list[AnySubmission] = []
        pending: list[dict[str, Any]] = []  # the results of ``submissions``, in the same order
        for index, raw in enumerate(body.ratings):
            checked = _batch_item(
                deps.intake, raw, index=index, key=idempotency_key, source=source, now=now, trust=trust
            )
            if isinstance(checked, dict):
                results.append(checked)
                continue
            submissions.append(checked)
            pending.append({"index": index, "status": "accepted", "rating_id": checked.rating_id})
            results.append(pending[-1])
        if submissions:
            for result, verdict in zip(pending, await _submit(deps, submissions), strict=True):
                _settle(result, verdict)
        accepted = sum(1 for r in results if r["status"] == "accepted")
        out = {"accepted": accepted, "rejected": len(results) - accepted, "results": results}
        return Response(orjson.dumps(out), status_code=202, media_type="application/json")

    async def fast_batch(request: Request, parsed: dict[str, Any], key: str | None) -> Response | None:
        items = parsed.get("ratings")
        if type(items) is list and items and all(type(item) is dict for item in items):
            # What ``BatchIn`` checks (a non-empty list of JSON objects), without copying every item
            # into a new dict first: each is validated as a ``RatingIn`` on its own anyway.
            body = BatchIn.model_construct(ratings=items)
        else:
            try:
                body = BatchIn.model_validate(parsed)
            except ValidationError:
                return None
        principal = await guard(request, await _bearer(request), await _api_key(request))
        answer: Response = await post_batch(request, body, principal, key)
        return answer

    if deps.settings.fast_path:
        fast_path(routes, "/v1/ratings/batch", fast_batch, key=_RATING_ID)


_RATING_ID = TypeAdapter(RatingId)


async def _submit(deps: CollectorDeps, submissions: list[AnySubmission]) -> list[Verdict]:
    """The intake's verdicts; a broker or database outage is the 503 problem (nothing was recorded)."""
    try:
        return await deps.intake.submit(submissions)
    except IntakeUnavailable as exc:
        raise unavailable(exc.what, retry_after_s=deps.settings.retry_after_s) from exc


def _answer(verdict: Verdict) -> Response:
    """202 for a recorded rating (a replay says so in a header), else the 409 problem."""
    if verdict.recorded:
        headers = {"Idempotent-Replayed": "true"} if verdict.replayed else None
        body = {"rating_id": verdict.rating_id, "status": "accepted"}
        # orjson: the same compact bytes as JSONResponse's json.dumps, in a fraction of the time.
        return Response(orjson.dumps(body), status_code=202, headers=headers, media_type="application/json")
    conflict = verdict.outcome is Outcome.CONFLICT
    raise ProblemError(
        409,
        "Conflict",
        detail=verdict.refusal,
        type_="https://csat.dev/problems/" + ("idempotency-conflict" if conflict else "in-progress"),
        field="rating_id",
        headers=None if conflict else {"Retry-After": "1"},
    )


def _batch_item(
    intake: Intake,
    raw: dict[str, Any],
    *,
    index: int,
    key: str | None,
    source: str,
    now: datetime,
    trust: Trust,
) -> AnySubmission | dict[str, Any]:
    """One batch item validated on its own: its submission, or its rejection (an ``ItemResult``)
    naming each field."""
    prefix = f"ratings[{index}]"
    try:
        item = RatingIn.model_validate(raw)
        derived = f"{key}-{index}" if key and not item.rating_id else None
        if derived is not None and len(derived) > 128:
            raise RatingRejected("rating_id", "Idempotency-Key too long to derive item ids")
        return intake.prepare_encoded(
            item,
            received_at=now,
            source=source,
            rating_id=derived,
            keyed=bool(item.rating_id or derived),
            trust=trust,
        )
    except ValidationError as exc:
        errors = [
            {
                "field": f"{prefix}.{field_path(e['loc'])}" if e["loc"] else prefix,
                "message": str(e["msg"]).removeprefix("Value error, "),
            }
            for e in exc.errors()
        ]
    except RatingRejected as exc:
        errors = [{"field": f"{prefix}.{exc.field}", "message": exc.message}]
    metrics.reject(metrics.reason_for_field(errors[0]["field"]), source)
    return {"index": index, "status": "rejected", "errors": errors}


def _settle(result: dict[str, Any], verdict: Verdict) -> None:
    """A valid item's final result: accepted (perhaps replayed), or refused for its rating_id."""
    if verdict.recorded:
        if verdict.replayed:
            result["replayed"] = True
        return
    del result["rating_id"]
    result["status"] = "rejected"
    result["errors"] = [{"field": f"ratings[{result['index']}].rating_id", "message": verdict.refusal}]
