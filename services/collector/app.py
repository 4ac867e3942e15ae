"""Collector composition root and HTTP routes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import BaseModel, Field, ValidationError

from services.collector.domain import RatingId, RatingIn, RatingRejected, normalize
from services.collector.publisher import BrokerUnavailable, KafkaPublisher, Publisher
from services.collector.settings import CollectorSettings
from shared import events as ev
from shared.envelope import OutgoingRecord, encode
from shared.events import RatingSubmitted
from shared.http import field_path, install_common, problem
from shared.limits import BodySizeLimitMiddleware
from shared.logs import configure_logging

log = structlog.get_logger(__name__)

ACCEPTED = Counter(
    "csat_ratings_accepted_total", "Ratings acknowledged by the broker and answered 202", ["metric", "source"]
)
REJECTED = Counter(
    "csat_ratings_rejected_total", "Ratings refused, by reason and source", ["reason", "source"]
)

PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "Body too large", "content": {"application/problem+json": {}}},
    422: {
        "description": "Invalid rating; `field` names the input at fault",
        "content": {"application/problem+json": {}},
    },
    503: {
        "description": "Broker unavailable; retry after `Retry-After` seconds",
        "content": {"application/problem+json": {}},
    },
}


class Accepted(BaseModel):
    rating_id: str
    status: Literal["accepted"] = "accepted"


class BatchIn(BaseModel):
    ratings: list[dict[str, Any]] = Field(
        min_length=1,
        json_schema_extra={"items": {"$ref": "#/components/schemas/RatingIn"}},
        description="Up to 500 ratings; each is validated on its own",
    )


class ItemResult(BaseModel):
    index: int
    status: Literal["accepted", "rejected"]
    rating_id: str | None = None
    errors: list[dict[str, str]] | None = None


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[ItemResult]


def to_record(rating: RatingSubmitted, *, topic: str) -> OutgoingRecord:
    return encode(
        topic=topic,
        event_type=ev.RATING_SUBMITTED,
        source="/collector",
        event_id=rating.rating_id,
        data=rating,
        key=rating.customer.id,
        subject=rating.rating_id,
        time=rating.received_at,
    )


def create_app(settings: CollectorSettings | None = None, *, publisher: Publisher | None = None) -> FastAPI:
    """Wire settings, publisher and routes; tests pass a fake publisher for pure API checks."""
    cfg = settings or CollectorSettings()
    configure_logging(service="collector", level=cfg.log_level, fmt=cfg.log_format)
    topic = cfg.topics.ratings
    skew = timedelta(seconds=cfg.max_future_skew_s)
    owned: KafkaPublisher | None = None
    if publisher is None:
        owned = KafkaPublisher(
            bootstrap=cfg.kafka_bootstrap,
            idempotence=cfg.kafka_idempotence,
            timeout_s=cfg.publish_timeout_s,
            request_timeout_s=cfg.kafka_request_timeout_s,
        )
        publisher = owned
    pub: Publisher = publisher

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if owned is not None:
            await owned.start()
        log.info("collector_started", topic=topic)
        yield
        if owned is not None:
            await owned.stop()

    app = FastAPI(
        title="CSAT collector",
        version="1.0.0",
        description="Ingestion API: ratings are validated, normalised and made durable in the broker "
        "before the 202 answer.",
        lifespan=lifespan,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=cfg.max_body_bytes)
    install_common(app, service="collector", checks={"broker": pub.check})

    def unavailable() -> JSONResponse:
        return problem(
            503,
            "Service Unavailable",
            detail="the broker is unavailable; nothing was recorded, retry later",
            type_="https://csat.dev/problems/broker-unavailable",
            headers={"Retry-After": str(cfg.retry_after_s)},
        )

    @app.post(
        "/v1/ratings",
        status_code=202,
        response_model=Accepted,
        responses=PROBLEM_RESPONSES,
        tags=["ratings"],
        summary="Submit one rating",
    )
    async def post_rating(
        body: RatingIn,
        idempotency_key: Annotated[RatingId | None, Header(alias="Idempotency-Key")] = None,
    ) -> Any:
        now = datetime.now(UTC)
        try:
            rating = normalize(body, received_at=now, rating_id=idempotency_key, max_future_skew=skew)
        except RatingRejected as exc:
            REJECTED.labels(exc.field.split(".")[0], "api").inc()
            return problem(
                422,
                "Invalid rating",
                detail=f"{exc.field}: {exc.message}",
                type_="https://csat.dev/problems/validation",
                errors=[{"field": exc.field, "message": exc.message}],
            )
        try:
            await pub.publish([to_record(rating, topic=topic)])
        except BrokerUnavailable as exc:
            REJECTED.labels("broker_unavailable", "api").inc()
            log.warning("publish_failed", error=str(exc))
            return unavailable()
        ACCEPTED.labels(rating.metric.value, "api").inc()
        return JSONResponse({"rating_id": rating.rating_id, "status": "accepted"}, status_code=202)

    @app.post(
        "/v1/ratings/batch",
        status_code=202,
        response_model=BatchResult,
        responses=PROBLEM_RESPONSES,
        tags=["ratings"],
        summary="Submit many ratings; one result per item",
    )
    async def post_batch(body: BatchIn) -> Any:
        if len(body.ratings) > cfg.max_batch_items:
            return problem(
                422,
                "Invalid request",
                detail=f"ratings: at most {cfg.max_batch_items} items per batch",
                type_="https://csat.dev/problems/validation",
                errors=[{"field": "ratings", "message": f"at most {cfg.max_batch_items} items"}],
            )
        now = datetime.now(UTC)
        results: list[ItemResult] = []
        records: list[OutgoingRecord] = []
        metrics: list[str] = []
        for index, raw in enumerate(body.ratings):
            prefix = f"ratings[{index}]"
            try:
                item = RatingIn.model_validate(raw)
                rating = normalize(item, received_at=now, max_future_skew=skew)
            except ValidationError as exc:
                errs = [
                    {
                        "field": f"{prefix}.{field_path(e['loc'])}" if e["loc"] else prefix,
                        "message": str(e["msg"]).removeprefix("Value error, "),
                    }
                    for e in exc.errors()
                ]
                REJECTED.labels("validation", "api").inc()
                results.append(ItemResult(index=index, status="rejected", errors=errs))
                continue
            except RatingRejected as exc:
                REJECTED.labels(exc.field, "api").inc()
                results.append(
                    ItemResult(
                        index=index,
                        status="rejected",
                        errors=[{"field": f"{prefix}.{exc.field}", "message": exc.message}],
                    )
                )
                continue
            records.append(to_record(rating, topic=topic))
            metrics.append(rating.metric.value)
            results.append(ItemResult(index=index, status="accepted", rating_id=rating.rating_id))
        if records:
            try:
                await pub.publish(records)
            except BrokerUnavailable as exc:
                REJECTED.labels("broker_unavailable", "api").inc(len(records))
                log.warning("publish_failed", error=str(exc), records=len(records))
                return unavailable()
        for metric in metrics:
            ACCEPTED.labels(metric, "api").inc()
        out = BatchResult(accepted=len(records), rejected=len(results) - len(records), results=results)
        return JSONResponse(out.model_dump(exclude_none=True), status_code=202)

    return app
