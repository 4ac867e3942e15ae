"""Collector composition root: wires settings, broker, database, limits and the three routers."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError
from starlette.types import Scope

from services.collector import metrics
from services.collector.access import (
    DEV_SOURCE,
    KeyResolver,
    OriginSet,
    ProblemError,
    SourceCorsMiddleware,
    client_ip,
    origin_of,
    same_origin,
)
from services.collector.domain import RatingId, RatingIn, RatingRejected, fingerprint, normalize
from services.collector.ingest import Ingestor, Outcome, Submission, to_record
from services.collector.ports import BrokerUnavailable, CollectorStore, Principal, Publisher, StoreUnavailable
from services.collector.publisher import KafkaPublisher
from services.collector.ratelimit import KeyedLimiter, retry_after
from services.collector.repository import PgStore
from services.collector.settings import CollectorSettings
from shared.db import make_engine
from shared.http import ReadinessCheck, field_path, install_common, problem, validation_problem
from shared.limits import BodySizeLimitMiddleware
from shared.logs import configure_logging

__all__ = ["Collector", "create_app", "to_record"]

log = structlog.get_logger(__name__)

RATING_PATHS = {"/v1/ratings", "/v1/ratings/batch"}


def _problem_example(status: int, title: str, type_: str, detail: str, field: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"https://csat.dev/problems/{type_}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if field:
        body["field"] = field
        body["errors"] = [{"field": field, "message": detail}]
    return {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}, "example": body}}


RATING_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "No key, or an unknown, revoked or expired one",
        "content": _problem_example(
            401, "Unauthorized", "unauthorized", "a source API key is required", None
        ),
    },
    403: {
        "description": "The source is disabled, or the browser origin is not one of the source's",
        "content": _problem_example(
            403, "Forbidden", "origin-not-allowed", "origin not allowed for this source", "Origin"
        ),
    },
    409: {
        "description": "The rating_id / Idempotency-Key was used before with a different body, "
        "or a concurrent attempt with it has not finished (then with Retry-After)",
        "content": _problem_example(
            409,
            "Conflict",
            "idempotency-conflict",
            "rating_id 'chat-8812' was already used for a different rating",
            "rating_id",
        ),
    },
    413: {
        "description": "Body larger than CSAT_MAX_BODY_BYTES; refused before it is read",
        "content": _problem_example(
            413, "Payload Too Large", "body-too-large", "the request body exceeds 1048576 bytes", "body"
        ),
    },
    422: {
        "description": "Invalid rating; `field` names the input at fault",
        "content": _problem_example(
            422, "Invalid rating", "validation", "score: score 9 is outside scale 1-5 (1 to 5)", "score"
        ),
    },
    429: {
        "description": "Too many requests for this key or client IP; retry after `Retry-After` seconds",
        "content": _problem_example(
            429, "Too Many Requests", "rate-limited", "rate limit for this key exceeded", None
        ),
    },
    503: {
        "description": "Broker or database unavailable; nothing was recorded; retry after `Retry-After`",
        "content": _problem_example(
            503,
            "Service Unavailable",
            "broker-unavailable",
            "the broker is unavailable; nothing was recorded, retry later",
            None,
        ),
    },
}


class ProblemModel(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str = Field(examples=["https://csat.dev/problems/validation"])
    title: str
    status: int
    detail: str | None = None
    field: str | None = Field(default=None, description="The input at fault (first of `errors`)")
    errors: list[dict[str, str]] | None = None


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


@dataclass
class Collector:
    """Everything the routers share; built once per app."""

    settings: CollectorSettings
    publisher: Publisher
    store: CollectorStore
    ingestor: Ingestor
    keys: KeyResolver
    origins: OriginSet
    ip_limiter: KeyedLimiter
    key_limiter: KeyedLimiter

    def limit_ip(self, scope: Scope, *, source: str | None = None) -> None:
        """429 when this client address has used up its bucket."""
        ip = client_ip(scope, self.settings.proxy_networks)
        wait = self.ip_limiter.acquire(ip)
        if wait:
            metrics.reject("rate_limited", source)
            raise ProblemError(
                429,
                "Too Many Requests",
                detail="too many requests from this address; retry later",
                type_="https://csat.dev/problems/rate-limited",
                headers={"Retry-After": str(retry_after(wait))},
            )

    def limit_key(self, principal: Principal) -> None:
        src = principal.source
        wait = self.key_limiter.acquire(
            f"key:{principal.key_id or src.source_id}",
            rate=src.rate_per_s,
            burst=float(src.rate_burst) if src.rate_burst else None,
        )
        if wait:
            metrics.reject("rate_limited", src.source_id)
            raise ProblemError(
                429,
                "Too Many Requests",
                detail="rate limit for this key exceeded; retry later",
                type_="https://csat.dev/problems/rate-limited",
                headers={"Retry-After": str(retry_after(wait))},
            )

    def unavailable(self, what: str, *, source: str | None, n: int = 1) -> ProblemError:
        metrics.reject(f"{what}_unavailable", source, n)
        return ProblemError(
            503,
            "Service Unavailable",
            detail=f"the {what} is unavailable; nothing was recorded, retry later",
            type_=f"https://csat.dev/problems/{what}-unavailable",
            headers={"Retry-After": str(self.settings.retry_after_s)},
        )


_bearer = HTTPBearer(auto_error=False, description="A source key: `Authorization: Bearer csk_...`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="A source key, as a header")


def create_app(
    settings: CollectorSettings | None = None,
    *,
    publisher: Publisher | None = None,
    store: CollectorStore | None = None,
) -> FastAPI:
    """Wire settings, publisher, store and routes; unit tests pass fakes for the two adapters."""
    cfg = settings or CollectorSettings()
    configure_logging(service="collector", level=cfg.log_level, fmt=cfg.log_format)
    skew = timedelta(seconds=cfg.max_future_skew_s)
    owned_publisher: KafkaPublisher | None = None
    if publisher is None:
        owned_publisher = KafkaPublisher(
            bootstrap=cfg.kafka_bootstrap,
            idempotence=cfg.kafka_idempotence,
            timeout_s=cfg.publish_timeout_s,
            request_timeout_s=cfg.kafka_request_timeout_s,
        )
        publisher = owned_publisher
    owned_store: PgStore | None = None
    if store is None:
        engine = make_engine(cfg.database_url, pool_size=cfg.db_pool_size, application_name="csat-collector")
        owned_store = PgStore(engine=engine, timeout_s=cfg.db_timeout_s)
        store = owned_store
    ctx = Collector(
        settings=cfg,
        publisher=publisher,
        store=store,
        ingestor=Ingestor(
            publisher=publisher,
            store=store,
            topic=cfg.topics.ratings,
            wait_s=cfg.idempotency_wait_s,
            lease_s=cfg.publish_timeout_s * 2 + 5,
            degrade=cfg.idempotency_when_db_down == "accept",
        ),
        keys=KeyResolver(store=store, ttl_s=cfg.key_cache_s, stale_s=cfg.key_cache_stale_s),
        origins=OriginSet(store=store, ttl_s=cfg.key_cache_s),
        ip_limiter=KeyedLimiter(
            rate_per_s=cfg.ip_rate, burst=cfg.rate_ip_burst, max_clients=cfg.rate_max_clients
        ),
        key_limiter=KeyedLimiter(
            rate_per_s=cfg.key_rate, burst=cfg.rate_key_burst, max_clients=cfg.rate_max_clients
        ),
    )

    async def purge_loop() -> None:
        """Forget rating ids older than the idempotency window, a bounded chunk at a time."""
        while True:
            await asyncio.sleep(600)
            try:
                cutoff = datetime.now(UTC) - timedelta(hours=cfg.idempotency_ttl_h)
                removed = await ctx.store.purge(older_than=cutoff)
                if removed:
                    log.info("idempotency_purged", rows=removed)
            except StoreUnavailable as exc:
                log.warning("idempotency_purge_failed", error=str(exc))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if owned_publisher is not None:
            await owned_publisher.start()
        purger = asyncio.create_task(purge_loop(), name="idempotency-purge")
        log.info("collector_started", topic=cfg.topics.ratings, keys_required=cfg.keys_required)
        yield
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        await ctx.ingestor.close()
        if owned_publisher is not None:
            await owned_publisher.stop()
        if owned_store is not None:
            await owned_store.close()

    app = FastAPI(
        title="CSAT collector",
        version="1.0.0",
        description=(
            "Ingestion API. Ratings are validated, normalised (score on its scale, normalised 0..1 "
            "score, sentiment) and made durable in the broker (acks=all) before the 202 answer.\n\n"
            "Posting needs a source key (`Authorization: Bearer csk_...` or `X-API-Key`) outside dev; "
            "a key can post ratings and nothing else. Admin endpoints need the admin key. "
            "A `rating_id` (or the `Idempotency-Key` header) makes a retry safe: it gets the first "
            "answer back; the same id with a different body is refused with 409. Every error is an "
            "RFC 9457 `application/problem+json` naming the `field` at fault."
        ),
        lifespan=lifespan,
    )
    app.state.collector = ctx
    app.add_middleware(SourceCorsMiddleware, paths=RATING_PATHS, origins=ctx.origins)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=cfg.max_body_bytes,
        on_reject=lambda _scope: metrics.reject("body_too_large", None),
    )
    # Ratings keep flowing while PostgreSQL is away (idempotency unchecked, see settings): the
    # database then only degrades readiness instead of taking the collector out of rotation.
    db_check: dict[str, ReadinessCheck] = {"database": store.check}
    degrade = cfg.idempotency_when_db_down == "accept"
    install_common(
        app,
        service="collector",
        checks={"broker": publisher.check, **({} if degrade else db_check)},
        soft_checks=db_check if degrade else None,
    )

    async def on_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem(
            exc.status, exc.title, detail=exc.detail, type_=exc.type_, errors=errors, headers=exc.headers
        )

    async def on_invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        answer = validation_problem(exc)
        if request.url.path in RATING_PATHS:
            errors = exc.errors()
            field = field_path(errors[0].get("loc", ())) if errors else "body"
            metrics.reject(metrics.reason_for_field(field), getattr(request.state, "source_id", None))
        return answer

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid)

    async def guard(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key)],
    ) -> Principal:
        """Per-IP limit, then the key (or anonymous in dev), the source's origins, then its key limit."""
        origin = origin_of(request.scope)
        if origin is not None and (same_origin(origin, request.scope) or await ctx.origins.contains(origin)):
            # An origin some source allows may read our refusals (429 with Retry-After, 401); whether
            # it may post for this key's source is decided below.
            request.state.cors_origin = origin
        ctx.limit_ip(request.scope)
        key = bearer.credentials.strip() if bearer else (api_key.strip() if api_key else None)
        if not key:
            if cfg.keys_required:
                metrics.reject("unauthorized", None)
                raise ProblemError(
                    401,
                    "Unauthorized",
                    detail="a source API key is required (Authorization: Bearer <key> or X-API-Key)",
                    type_="https://csat.dev/problems/unauthorized",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = Principal(source=DEV_SOURCE, key_id=None)
        else:
            try:
                found = await ctx.keys.resolve(key)
            except StoreUnavailable as exc:
                raise ctx.unavailable("database", source=None) from exc
            if found is None:
                metrics.reject("unauthorized", None)
                raise ProblemError(
                    401,
                    "Unauthorized",
                    detail="unknown, revoked or expired key; source keys only (csk_...)",
                    type_="https://csat.dev/problems/unauthorized",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            principal = found
        src = principal.source
        request.state.source_id = src.source_id
        if src.disabled:
            metrics.reject("forbidden", src.source_id)
            raise ProblemError(
                403,
                "Forbidden",
                detail="this source is disabled",
                type_="https://csat.dev/problems/forbidden",
            )
        if origin is not None:
            if origin in src.allowed_origins or same_origin(origin, request.scope):
                request.state.cors_origin = origin
            else:
                request.state.cors_origin = None
                metrics.reject("origin_not_allowed", src.source_id)
                raise ProblemError(
                    403,
                    "Forbidden",
                    detail="this origin is not allowed for the source of this key",
                    type_="https://csat.dev/problems/origin-not-allowed",
                    field="Origin",
                )
        ctx.limit_key(principal)
        return principal

    Guard = Annotated[Principal, Depends(guard)]
    IdempotencyKey = Annotated[
        RatingId | None,
        Header(
            alias="Idempotency-Key",
            description="Client key for safe retries; becomes the rating_id (batch: `<key>-<index>` "
            "for items without one)",
        ),
    ]

    def invalid(field: str, message: str, source: str) -> ProblemError:
        metrics.reject(metrics.reason_for_field(field), source)
        return ProblemError(
            422,
            "Invalid rating",
            detail=f"{field}: {message}",
            type_="https://csat.dev/problems/validation",
            field=field,
            message=message,
        )

    @app.post(
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
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {
                        "examples": {
                            "csat-stars": {
                                "summary": "CSAT on 1-5 stars, with context",
                                "value": RatingIn.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index] # the example declared on the model
                            },
                            "likert-label": {
                                "summary": "A Likert label instead of a number",
                                "value": {
                                    "metric": "csat",
                                    "scale": "1-5",
                                    "score": "very satisfied",
                                    "customer": {"id": "cus_7"},
                                },
                            },
                            "nps": {
                                "summary": "NPS 0-10",
                                "value": {"metric": "nps", "score": 9, "customer": {"id": "cus_8"}},
                            },
                            "ces-effort": {
                                "summary": "CES, the 1-5 'how much effort' variant (lower is easier)",
                                "value": {
                                    "metric": "ces",
                                    "scale": "1-5",
                                    "score": 2,
                                    "customer": {"id": "c9"},
                                },
                            },
                            "smileys": {
                                "summary": "Three smileys",
                                "value": {
                                    "metric": "csat",
                                    "scale": "smileys",
                                    "score": "happy",
                                    "customer": {"id": "c"},
                                },
                            },
                        }
                    }
                }
            }
        },
    )
    async def post_rating(
        request: Request, body: RatingIn, principal: Guard, idempotency_key: IdempotencyKey = None
    ) -> Any:
        source = principal.source.source_id
        if idempotency_key and body.rating_id and idempotency_key != body.rating_id:
            raise invalid("rating_id", "rating_id and the Idempotency-Key header differ", source)
        try:
            rating = normalize(
                body,
                received_at=datetime.now(UTC),
                rating_id=idempotency_key,
                source=source,
                max_future_skew=skew,
            )
        except RatingRejected as exc:
            raise invalid(exc.field, exc.message, source) from exc
        keyed = bool(body.rating_id or idempotency_key)
        fp = fingerprint(rating, client_occurred_at=body.occurred_at) if keyed else None
        try:
            outcome = (
                await ctx.ingestor.submit([Submission(rating=rating, source_id=source, fingerprint=fp)])
            )[0]
        except BrokerUnavailable as exc:
            log.warning("publish_failed", error=str(exc))
            raise ctx.unavailable("broker", source=source) from exc
        except StoreUnavailable as exc:
            log.warning("idempotency_store_failed", error=str(exc))
            raise ctx.unavailable("database", source=source) from exc
        body_out = {"rating_id": rating.rating_id, "status": "accepted"}
        if outcome is Outcome.ACCEPTED:
            metrics.ACCEPTED.labels(rating.metric.value, source).inc()
            return JSONResponse(body_out, status_code=202)
        if outcome is Outcome.REPLAYED:
            return JSONResponse(body_out, status_code=202, headers={"Idempotent-Replayed": "true"})
        raise _conflict(outcome, rating.rating_id, source, field="rating_id")

    @app.post(
        "/v1/ratings/batch",
        status_code=202,
        response_model=BatchResult,
        responses={**RATING_PROBLEMS, 202: {"description": "One result per item, in order"}},
        tags=["ratings"],
        summary="Submit many ratings; one result per item",
        description="Valid items are published together (one acks=all round trip); invalid ones are "
        "listed with the field at fault. A 503 means no item was recorded.",
    )
    async def post_batch(body: BatchIn, principal: Guard, idempotency_key: IdempotencyKey = None) -> Any:
        source = principal.source.source_id
        if len(body.ratings) > cfg.max_batch_items:
            raise invalid("ratings", f"at most {cfg.max_batch_items} items per batch", source)
        now = datetime.now(UTC)
        results: list[ItemResult] = []
        subs: list[Submission] = []
        positions: list[int] = []
        for index, raw in enumerate(body.ratings):
            prefix = f"ratings[{index}]"
            try:
                item = RatingIn.model_validate(raw)
                derived = f"{idempotency_key}-{index}" if idempotency_key and not item.rating_id else None
                if derived is not None and len(derived) > 128:
                    raise RatingRejected("rating_id", "Idempotency-Key too long to derive item ids")
                rating = normalize(
                    item, received_at=now, rating_id=derived, source=source, max_future_skew=skew
                )
            except ValidationError as exc:
                errs = [
                    {
                        "field": f"{prefix}.{field_path(e['loc'])}" if e["loc"] else prefix,
                        "message": str(e["msg"]).removeprefix("Value error, "),
                    }
                    for e in exc.errors()
                ]
                metrics.reject(metrics.reason_for_field(errs[0]["field"]), source)
                results.append(ItemResult(index=index, status="rejected", errors=errs))
                continue
            except RatingRejected as exc:
                metrics.reject(metrics.reason_for_field(exc.field), source)
                results.append(
                    ItemResult(
                        index=index,
                        status="rejected",
                        errors=[{"field": f"{prefix}.{exc.field}", "message": exc.message}],
                    )
                )
                continue
            keyed = bool(item.rating_id or derived)
            fp = fingerprint(rating, client_occurred_at=item.occurred_at) if keyed else None
            subs.append(Submission(rating=rating, source_id=source, fingerprint=fp))
            positions.append(len(results))
            results.append(ItemResult(index=index, status="accepted", rating_id=rating.rating_id))
        if subs:
            try:
                outcomes = await ctx.ingestor.submit(subs)
            except BrokerUnavailable as exc:
                log.warning("publish_failed", error=str(exc), records=len(subs))
                raise ctx.unavailable("broker", source=source, n=len(subs)) from exc
            except StoreUnavailable as exc:
                log.warning("idempotency_store_failed", error=str(exc), records=len(subs))
                raise ctx.unavailable("database", source=source, n=len(subs)) from exc
            for sub, pos, outcome in zip(subs, positions, outcomes, strict=True):
                res = results[pos]
                if outcome is Outcome.ACCEPTED:
                    metrics.ACCEPTED.labels(sub.rating.metric.value, source).inc()
                elif outcome is Outcome.REPLAYED:
                    res.replayed = True
                else:
                    reason = "idempotency_conflict" if outcome is Outcome.CONFLICT else "in_progress"
                    metrics.reject(reason, source)
                    res.status = "rejected"
                    res.errors = [
                        {
                            "field": f"ratings[{res.index}].rating_id",
                            "message": _conflict_text(outcome, sub.rating.rating_id),
                        }
                    ]
                    res.rating_id = None
        accepted = sum(1 for r in results if r.status == "accepted")
        out = BatchResult(accepted=accepted, rejected=len(results) - accepted, results=results)
        return JSONResponse(out.model_dump(exclude_none=True), status_code=202)

    from services.collector.admin import admin_router
    from services.collector.channels import channels_router

    app.include_router(admin_router(ctx))
    app.include_router(channels_router(ctx))
    _add_problem_schema(app)
    return app


def _conflict_text(outcome: Outcome, rating_id: str) -> str:
    if outcome is Outcome.CONFLICT:
        return f"rating_id {rating_id!r} was already used for a different rating"
    return f"rating_id {rating_id!r} is being recorded by a concurrent request; retry shortly"


def _conflict(outcome: Outcome, rating_id: str, source: str, *, field: str) -> ProblemError:
    conflict = outcome is Outcome.CONFLICT
    metrics.reject("idempotency_conflict" if conflict else "in_progress", source)
    return ProblemError(
        409,
        "Conflict",
        detail=_conflict_text(outcome, rating_id),
        type_="https://csat.dev/problems/" + ("idempotency-conflict" if conflict else "in-progress"),
        field=field,
        headers=None if conflict else {"Retry-After": "1"},
    )


def _add_problem_schema(app: FastAPI) -> None:
    """Register the Problem schema that every error response refers to."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = ProblemModel.model_json_schema(ref_template="#/components/schemas/{model}")
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign] # FastAPI's documented way to extend the schema
