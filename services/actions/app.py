"""Actions composition root: rating consumer, rule evaluation and the customer-context API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Path, Query
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions import repository
from services.actions.engine import History, decide
from services.actions.rules import RuleSet, load_rules_file
from services.actions.settings import ActionsSettings
from shared import events as ev
from shared import tracing
from shared.consumer import Received
from shared.envelope import OutgoingRecord, encode
from shared.events import RatingSubmitted
from shared.http import install_common, problem
from shared.logs import configure_logging
from shared.runtime import ConsumerRuntime

log = structlog.get_logger(__name__)

RULE_HITS = Counter(
    "csat_rule_hits_total", "Rule actions decided, by rule, action and outcome", ["rule", "action", "outcome"]
)


class CustomerIn(BaseModel):
    """Context the rules use: value and tier, owner CSM, contact details, consent and opt-out."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    phone: str | None = Field(default=None, pattern=r"^\+[1-9]\d{6,14}$")
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    timezone: str | None = None
    tier: str | None = Field(default=None, max_length=40)
    value: float | None = Field(default=None, ge=0)
    owner_email: EmailStr | None = None
    owner_name: str | None = Field(default=None, max_length=200)
    consent: dict[str, bool] = Field(default_factory=dict)
    opted_out: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict, description="usage signals and any other facts")


def make_handler(settings: ActionsSettings, rules: RuleSet) -> Any:
    topics = settings.topics

    async def handle(conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        ratings = [r.envelope.data for r in batch if isinstance(r.envelope.data, RatingSubmitted)]
        fresh_ids = await repository.insert_new_ratings(conn, ratings)
        fresh = [r for r in ratings if r.rating_id in fresh_ids]
        if not fresh:
            return []
        now = datetime.now(UTC)
        customers = [r.customer.id for r in fresh]
        contexts = await repository.load_contexts(conn, customers)
        histories = await repository.load_history(conn, customers, since=now - timedelta(days=30))
        last_fired = await repository.load_last_fired(conn, customers)
        out: list[OutgoingRecord] = []
        rows: list[dict[str, Any]] = []
        for rating in sorted(fresh, key=lambda r: r.occurred_at):
            tracing.follow(rating)  # what this rating causes continues its trace
            cid = rating.customer.id
            fired = {rule: at for (c, rule), at in last_fired.items() if c == cid}
            decisions = decide(
                rules=rules,
                rating=rating,
                ctx=contexts.get(cid),
                history=histories.get(cid, History()),
                last_fired=fired,
                now=now,
                default_csm_email=settings.default_csm_email,
                default_locale=settings.default_locale,
            )
            for d in decisions:
                outcome = "skipped_" + d.skipped if d.skipped else "notified"
                RULE_HITS.labels(d.rule_id, d.action.value, outcome).inc()
                decision_id = f"{d.rule_id}/{rating.rating_id}/{d.index}"
                rows.append(
                    {
                        "decision_id": decision_id,
                        "rule_id": d.rule_id,
                        "action": d.action.value,
                        "rating_id": rating.rating_id,
                        "customer_id": cid,
                        "notification_id": d.notification.notification_id if d.notification else None,
                        "created_at": now,
                    }
                )
                if d.notification is None:
                    continue
                last_fired[(cid, d.rule_id)] = now
                out.append(
                    encode(
                        topic=topics.notifications,
                        event_type=ev.NOTIFICATION_REQUESTED,
                        source="/actions",
                        event_id=d.notification.notification_id,
                        data=d.notification,
                        key=cid,
                        subject=d.notification.notification_id,
                    )
                )
                out.append(
                    encode(
                        topic=topics.actions,
                        event_type=ev.ACTION_DECIDED,
                        source="/actions",
                        event_id=decision_id,
                        data=ev.ActionDecided(
                            decision_id=decision_id,
                            rule_id=d.rule_id,
                            action=d.action.value,
                            rating_id=rating.rating_id,
                            customer_id=cid,
                            decided_at=now,
                        ),
                        key=cid,
                    )
                )
        await repository.insert_decisions(conn, rows)
        return out

    return handle


def create_app(settings: ActionsSettings | None = None) -> FastAPI:
    cfg = settings or ActionsSettings()
    configure_logging(service="actions", level=cfg.log_level, fmt=cfg.log_format)
    rules = load_rules_file(cfg.rules_file)
    runtime = ConsumerRuntime(
        name="actions",
        settings=cfg,
        topics=[cfg.topics.ratings],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_actions,
        handler=make_handler(cfg, rules),
        max_batch=cfg.max_batch,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("rules_loaded", file=str(cfg.rules_file), rules=len(rules.rules))
        await runtime.start()
        yield
        await runtime.stop()

    app = FastAPI(
        title="CSAT actions",
        version="1.0.0",
        lifespan=lifespan,
        description="Declarative follow-up rules evaluated on every rating.",
    )
    app.state.runtime = runtime
    install_common(
        app,
        service="actions",
        checks={"database": runtime.check_database, "consumer": runtime.check_consumer},
    )

    @app.get("/v1/rules", tags=["rules"], summary="The rule set in force")
    async def get_rules() -> Any:
        return rules.model_dump(mode="json")

    @app.put("/v1/customers/{customer_id}", tags=["customers"], summary="Set a customer's context")
    async def put_customer(
        body: CustomerIn, customer_id: Annotated[str, Path(min_length=1, max_length=200)]
    ) -> Any:
        async with runtime.engine.begin() as conn:
            await repository.upsert_customer(conn, customer_id, body.model_dump(mode="json"))
            return await repository.get_customer(conn, customer_id)

    @app.get("/v1/customers/{customer_id}", tags=["customers"], summary="A customer's stored context")
    async def get_customer(customer_id: str) -> Any:
        async with runtime.engine.connect() as conn:
            found = await repository.get_customer(conn, customer_id)
        if found is None:
            return problem(404, "Not Found", detail="no context stored for this customer")
        return found

    @app.get("/v1/decisions", tags=["rules"], summary="Recent rule decisions")
    async def get_decisions(
        customer_id: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> Any:
        async with runtime.engine.connect() as conn:
            return {"decisions": await repository.list_decisions(conn, customer_id=customer_id, limit=limit)}

    return app
