"""Notifier composition root: providers per channel, the request consumer, and the outbox API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import structlog
from fastapi import FastAPI, Query
from sqlalchemy import text

from services.notifier.delivery import Deliverer
from services.notifier.providers import Provider
from services.notifier.providers.outbox import OutboxProvider
from services.notifier.providers.sendgrid import SendGridProvider
from services.notifier.settings import NotifierSettings
from services.notifier.templating import Templates
from shared.db import make_engine
from shared.events import Channel
from shared.http import install_common
from shared.logs import configure_logging
from shared.runtime import ConsumerRuntime

log = structlog.get_logger(__name__)


def build_providers(cfg: NotifierSettings) -> dict[Channel, Provider]:
    outbox = OutboxProvider(directory=cfg.outbox_dir)
    email: Provider = outbox
    if cfg.email_provider == "sendgrid":
        assert cfg.sendgrid_api_key is not None
        email = SendGridProvider(
            api_key=cfg.sendgrid_api_key.get_secret_value(),
            base_url=cfg.sendgrid_base_url,
            from_email=cfg.from_email,
            from_name=cfg.from_name,
            timeout_s=cfg.provider_timeout_s,
        )
    return {Channel.EMAIL: email, Channel.SMS: outbox, Channel.SLACK: outbox, Channel.WEBHOOK: outbox}


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    cfg = settings or NotifierSettings()
    configure_logging(service="notifier", level=cfg.log_level, fmt=cfg.log_format)
    engine = make_engine(cfg.database_url, pool_size=cfg.db_pool_size, application_name="csat-notifier")
    providers = build_providers(cfg)
    deliverer = Deliverer(
        engine=engine,
        providers=providers,
        templates=Templates(),
        topics=cfg.topics,
        max_attempts=cfg.max_attempts,
    )
    runtime = ConsumerRuntime(
        name="notifier",
        settings=cfg,
        topics=[cfg.topics.notifications],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_notifier,
        handler=deliverer.handle,
        max_batch=cfg.max_batch,
        engine=engine,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("providers", **{f"{ch.value}_provider": p.name for ch, p in providers.items()})
        await runtime.start()
        yield
        await runtime.stop()
        for p in {id(p): p for p in providers.values()}.values():
            close = getattr(p, "aclose", None)
            if close is not None:
                await close()

    app = FastAPI(
        title="CSAT notifier",
        version="1.0.0",
        lifespan=lifespan,
        description="Sends email, SMS and chat messages once per notification, through providers.",
    )
    app.state.runtime = runtime
    install_common(
        app,
        service="notifier",
        checks={"database": runtime.check_database, "consumer": runtime.check_consumer},
    )

    @app.get("/v1/outbox", tags=["outbox"], summary="Messages delivered to the local outbox, newest first")
    async def get_outbox(
        recipient: str | None = None,
        rule_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT notification_id, channel, recipient, subject, body, rule_id, created_at "
                    "FROM notifier.outbox WHERE (CAST(:r AS text) IS NULL OR recipient = :r) "
                    "AND (CAST(:rule AS text) IS NULL OR rule_id = :rule) ORDER BY id DESC LIMIT :limit"
                ),
                {"r": recipient, "rule": rule_id, "limit": limit},
            )
            items = [{**dict(r._mapping), "created_at": r.created_at.isoformat()} for r in rows]
        return {"messages": items}

    @app.get(
        "/v1/deliveries/{notification_id}", tags=["outbox"], summary="The delivery record of one notification"
    )
    async def get_delivery(notification_id: str) -> Any:
        async with engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        text("SELECT * FROM notifier.deliveries WHERE notification_id = :id"),
                        {"id": notification_id},
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            from shared.http import problem

            return problem(404, "Not Found", detail="no delivery for this notification id")
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}

    return app
