"""Notifier composition root: providers per channel, intake, dispatcher, unsubscribe and admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import structlog
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import text

from services.notifier import store
from services.notifier.delivery import Intake
from services.notifier.dispatcher import DispatchConfig, Dispatcher, PublisherUnavailable
from services.notifier.policy import address_key
from services.notifier.providers import Provider
from services.notifier.providers.mailgun import MailgunProvider
from services.notifier.providers.outbox import OutboxProvider
from services.notifier.providers.postmark import PostmarkProvider
from services.notifier.providers.sendgrid import SendGridProvider
from services.notifier.providers.slack import SlackProvider
from services.notifier.providers.twilio import TwilioProvider
from services.notifier.providers.webhook import WebhookProvider
from services.notifier.settings import NotifierSettings
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from services.notifier.unsubscribe import unsubscribe_router
from services.notifier.wakeup import WakeListener
from shared.auth import admin_guard
from shared.db import make_engine
from shared.envelope import OutgoingRecord
from shared.events import Channel
from shared.http import install_common, problem
from shared.kafka import send_all
from shared.logs import configure_logging
from shared.runtime import ConsumerRuntime

log = structlog.get_logger(__name__)

#: httpx bounds each phase (connect, write, read) by the timeout; an attempt is all three plus slack.
PHASES = 3


def _secret(value: Any) -> str:
    assert value is not None, "validated by NotifierSettings"
    return str(value.get_secret_value())


def build_providers(cfg: NotifierSettings, *, engine: Any) -> dict[Channel, Provider]:
    """The provider serving each channel, as configured (the local outbox by default)."""
    outbox = OutboxProvider(engine=engine, directory=cfg.outbox_dir)
    timeout = cfg.provider_timeout_s
    email: Provider = outbox
    if cfg.email_provider == "sendgrid":
        email = SendGridProvider(
            api_key=_secret(cfg.sendgrid_api_key),
            base_url=cfg.sendgrid_base_url,
            from_email=cfg.from_email,
            from_name=cfg.from_name,
            timeout_s=timeout,
        )
    elif cfg.email_provider == "mailgun":
        assert cfg.mailgun_domain is not None
        email = MailgunProvider(
            api_key=_secret(cfg.mailgun_api_key),
            domain=cfg.mailgun_domain,
            base_url=cfg.mailgun_base_url,
            from_email=cfg.from_email,
            from_name=cfg.from_name,
            timeout_s=timeout,
        )
    elif cfg.email_provider == "postmark":
        email = PostmarkProvider(
            server_token=_secret(cfg.postmark_server_token),
            base_url=cfg.postmark_base_url,
            from_email=cfg.from_email,
            from_name=cfg.from_name,
            message_stream=cfg.postmark_message_stream,
            timeout_s=timeout,
        )
    sms: Provider = outbox
    if cfg.sms_provider == "twilio":
        assert cfg.twilio_account_sid is not None
        sms = TwilioProvider(
            account_sid=cfg.twilio_account_sid,
            auth_token=_secret(cfg.twilio_auth_token),
            base_url=cfg.twilio_base_url,
            from_number=cfg.twilio_from,
            messaging_service_sid=cfg.twilio_messaging_service_sid,
            timeout_s=timeout,
        )
    chat: Provider = SlackProvider(timeout_s=timeout) if cfg.chat_provider == "slack" else outbox
    hook: Provider = outbox
    if cfg.webhook_provider == "webhook":
        hook = WebhookProvider(secret=_secret(cfg.webhook_secret), timeout_s=timeout)
    return {Channel.EMAIL: email, Channel.SMS: sms, Channel.SLACK: chat, Channel.WEBHOOK: hook}


class SuppressionRequest(BaseModel):
    """Who must stop receiving customer-facing messages (any of the three)."""

    customer_id: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    reason: str = Field(default="admin", max_length=80)

    @model_validator(mode="after")
    def _one(self) -> SuppressionRequest:
        if not (self.customer_id or self.email or self.phone):
            raise ValueError("give a customer_id, an email or a phone")
        return self

    def entries(self) -> list[tuple[str, str]]:
        return _entries(self.customer_id, self.email, self.phone)


def _entries(customer_id: str | None, email: str | None, phone: str | None) -> list[tuple[str, str]]:
    out = []
    if customer_id:
        out.append(("customer", customer_id))
    if email:
        out.append(("email", address_key("email", email)))
    if phone:
        out.append(("sms", address_key("sms", phone)))
    return out


_DELIVERY_COLUMNS = (
    "notification_id, channel, provider, status, reason, attempts, rule_id, customer_id, transactional, "
    "provider_message_id, last_error, next_attempt_at, created_at, updated_at, sent_at"
)


def _jsonable(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(row).items()}


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    cfg = settings or NotifierSettings()
    configure_logging(service="notifier", level=cfg.log_level, fmt=cfg.log_format)
    engine = make_engine(
        cfg.database_url,
        pool_size=cfg.db_pool_size,
        application_name="csat-notifier",
        ping_idle_s=cfg.db_ping_idle_s,
    )
    providers = build_providers(cfg, engine=engine)
    tokens = UnsubscribeTokens(cfg.unsubscribe_secrets)
    intake = Intake(provider_names={ch: p.name for ch, p in providers.items()})
    runtime = ConsumerRuntime(
        name="notifier",
        settings=cfg,
        topics=[cfg.topics.notifications],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_notifier,
        handler=intake.handle,
        max_batch=cfg.max_batch,
        top_up=True,
        engine=engine,
    )

    async def publish(records: Sequence[OutgoingRecord]) -> None:
        if runtime.producer is None:
            raise PublisherUnavailable("producer not connected yet")
        await send_all(runtime.producer, records, timeout_s=cfg.kafka_request_timeout_s * 2)

    defaults: dict[Channel, str] = {}
    if cfg.slack_webhook_url is not None:
        defaults[Channel.SLACK] = cfg.slack_webhook_url.get_secret_value()
    if cfg.webhook_url:
        defaults[Channel.WEBHOOK] = cfg.webhook_url
    for channel in (Channel.SLACK, Channel.WEBHOOK):
        if providers[channel].name == "outbox":
            defaults.setdefault(channel, f"outbox:{channel.value}")  # the local outbox needs no URL
    dispatcher = Dispatcher(
        engine=engine,
        providers=providers,
        templates=Templates(),
        tokens=tokens,
        topics=cfg.topics,
        publish=publish,
        default_addresses=defaults,
        config=DispatchConfig(
            max_attempts=cfg.max_attempts,
            retry_base_s=cfg.retry_base_s,
            retry_cap_s=cfg.retry_cap_s,
            interval_s=cfg.dispatch_interval_s,
            concurrency=cfg.dispatch_concurrency,
            batch=cfg.dispatch_batch,
            attempt_timeout_s=cfg.provider_timeout_s * PHASES + 1,
            lease_grace_s=cfg.lease_grace_s,
            daily_cap=cfg.daily_cap,
            quiet=cfg.quiet_window,
            default_zone=cfg.default_zone,
            public_base_url=cfg.public_base_url,
            unsubscribe_mailto=cfg.unsubscribe_mailto,
        ),
    )

    listener = (
        WakeListener(database_url=cfg.database_url, wake=dispatcher.wake) if cfg.dispatch_listen else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("providers", **{f"{ch.value}_provider": p.name for ch, p in providers.items()})
        await runtime.start()
        await dispatcher.start()
        if listener is not None:
            await listener.start()
        yield
        if listener is not None:
            await listener.stop()
        await dispatcher.stop()
        await runtime.stop()
        for p in {id(p): p for p in providers.values()}.values():
            await p.aclose()

    app = FastAPI(
        title="CSAT notifier",
        version="1.0.0",
        lifespan=lifespan,
        description="Sends email, SMS and chat messages once per notification, through providers.",
    )
    app.state.runtime = runtime
    app.state.dispatcher = dispatcher

    async def check_dispatcher() -> None:
        dispatcher.check()

    install_common(
        app,
        service="notifier",
        checks={
            "database": runtime.check_database,
            "consumer": runtime.check_consumer,
            "dispatcher": check_dispatcher,
        },
    )
    app.include_router(unsubscribe_router(engine=engine, tokens=tokens))
    admin = [Depends(admin_guard(cfg.admin_api_key))]

    @app.get("/v1/outbox", tags=["outbox"], summary="Messages delivered to the local outbox, newest first")
    async def get_outbox(
        recipient: str | None = None,
        rule_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    "SELECT notification_id, channel, recipient, subject, body, rule_id, headers, created_at "
                    "FROM notifier.outbox WHERE (CAST(:r AS text) IS NULL OR recipient = :r) "
                    "AND (CAST(:rule AS text) IS NULL OR rule_id = :rule) ORDER BY id DESC LIMIT :limit"
                ),
                {"r": recipient, "rule": rule_id, "limit": limit},
            )
            items = [_jsonable(r._mapping) for r in rows]
        return {"messages": items}

    @app.get(
        "/v1/deliveries/{notification_id}",
        tags=["deliveries"],
        summary="The delivery record of one notification",
    )
    async def get_delivery(notification_id: str) -> Any:
        async with engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        text(
                            f"SELECT {_DELIVERY_COLUMNS} FROM notifier.deliveries "  # noqa: S608 - constant columns
                            "WHERE notification_id = :id"
                        ),
                        {"id": notification_id},
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return problem(404, "Not Found", detail="no delivery for this notification id")
        return _jsonable(row)

    @app.get(
        "/v1/deliveries",
        tags=["deliveries"],
        dependencies=admin,
        summary="Delivery records by status, newest first (e.g. failed or unknown ones to review)",
    )
    async def list_deliveries(
        status: Literal["pending", "sending", "sent", "failed", "suppressed", "unknown"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        async with engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT {_DELIVERY_COLUMNS} FROM notifier.deliveries "  # noqa: S608 - constant columns
                    "WHERE (CAST(:status AS text) IS NULL OR status = :status) "
                    "ORDER BY updated_at DESC LIMIT :limit"
                ),
                {"status": status, "limit": limit},
            )
            items = [_jsonable(r._mapping) for r in rows]
            counts = await store.counts_by_status(conn)
        return {"deliveries": items, "counts": counts}

    @app.get("/v1/suppressions", tags=["suppressions"], dependencies=admin, summary="The suppression list")
    async def list_suppressions(
        customer_id: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        async with engine.connect() as conn:
            items = await store.list_suppressions(
                conn, entries=_entries(customer_id, email, phone), limit=limit
            )
        return {"suppressions": items}

    @app.post(
        "/v1/suppressions",
        tags=["suppressions"],
        dependencies=admin,
        status_code=201,
        summary="Stop customer-facing messages to a customer, an email address or a phone number",
    )
    async def add_suppression(body: SuppressionRequest) -> Any:
        async with engine.begin() as conn:
            added = await store.suppress(
                conn,
                entries=body.entries(),
                reason=body.reason,
                source="admin",
                customer_id=body.customer_id,
                notification_id=None,
            )
        return {"added": added}

    @app.delete(
        "/v1/suppressions",
        tags=["suppressions"],
        dependencies=admin,
        summary="Lift a suppression (the person opted back in)",
    )
    async def remove_suppression(
        customer_id: str | None = None, email: str | None = None, phone: str | None = None
    ) -> Any:
        entries = _entries(customer_id, email, phone)
        if not entries:
            return problem(
                422,
                "Invalid request",
                detail="give a customer_id, an email or a phone",
                errors=[{"field": "customer_id", "message": "give a customer_id, an email or a phone"}],
            )
        async with engine.begin() as conn:
            removed = await store.unsuppress(conn, entries=entries)
        return {"removed": removed}

    return app
