"""The notifier's composition root: settings -> engine, providers, store, intake, dispatcher, routes.

Only wiring: what each message becomes is decided in ``handlers`` (intake), ``dispatcher`` and the
pure ``transitions``; the PostgreSQL adapter is ``repository``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.notifier.deps import NotifierDeps
from services.notifier.dispatcher import Dispatcher, PublisherUnavailable
from services.notifier.erasure_store import NotifierErasure, export_customer
from services.notifier.handlers import Intake
from services.notifier.policy import AddressKeys
from services.notifier.providers import Provider
from services.notifier.providers.mailgun import MailgunProvider
from services.notifier.providers.outbox import OutboxProvider
from services.notifier.providers.postmark import PostmarkProvider
from services.notifier.providers.sendgrid import SendGridProvider
from services.notifier.providers.slack import SlackProvider
from services.notifier.providers.survey_inapp import InAppProvider
from services.notifier.providers.survey_sms import RegisteringSmsProvider, SurveySmsRegistrar
from services.notifier.providers.twilio import TwilioProvider
from services.notifier.providers.webhook import WebhookProvider
from services.notifier.reconcile import ReconcileConfig
from services.notifier.reconciler import Reconciler
from services.notifier.repository import PgDeliveries, PgNotifierStore
from services.notifier.routes import deliveries, outbox, suppressions, unsubscribe
from services.notifier.routes import templates as previews
from services.notifier.settings import NotifierSettings
from services.notifier.templating import Templates
from services.notifier.tokens import UnsubscribeTokens
from services.notifier.transitions import DispatchConfig
from services.notifier.wakeup import WakeListener
from shared.consumer import Handler, Received
from shared.db import make_engine
from shared.envelope import OutgoingRecord
from shared.erasure import SqlExport, erasure_runtime, export_router
from shared.events import Channel
from shared.http import install_common
from shared.identity.guard import Authenticator
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Scope
from shared.identity.wiring import service_authenticator
from shared.kafka import send_all
from shared.logs import configure_logging
from shared.retention import RetentionJob
from shared.runtime import ConsumerRuntime
from shared.textguard import JsonTextGuard

log = structlog.get_logger(__name__)

#: httpx bounds each phase (connect, write, read) by the timeout; an attempt is all three plus slack.
PHASES = 3


def _secret(value: Any) -> str:
    assert value is not None, "validated by NotifierSettings"
    return str(value.get_secret_value())


def build_providers(cfg: NotifierSettings, *, engine: AsyncEngine) -> dict[Channel, Provider]:
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
    # Survey SMS and in-app invitations are registered with the collector (its internal listener).
    registrar = (
        SurveySmsRegistrar(base_url=cfg.collector_url, token=_secret(cfg.collector_token), timeout_s=timeout)
        if cfg.collector_url
        else None
    )
    in_app = InAppProvider(registrar)
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
        if registrar is not None:
            # Replies come back through Twilio to the collector: it must know each survey SMS first.
            sms = RegisteringSmsProvider(sms, registrar)
    policy = cfg.outbound_policy(cfg.environment)  # rule URLs are set by admins: the SSRF guard applies
    chat: Provider = outbox
    if cfg.chat_provider == "slack":
        chat = SlackProvider(policy=policy, timeout_s=timeout)
    hook: Provider = outbox
    if cfg.webhook_provider == "webhook":
        hook = WebhookProvider(secret=_secret(cfg.webhook_secret), policy=policy, timeout_s=timeout)
    return {
        Channel.EMAIL: email,
        Channel.SMS: sms,
        Channel.SLACK: chat,
        Channel.WEBHOOK: hook,
        Channel.IN_APP: in_app,
    }


def default_addresses(cfg: NotifierSettings, providers: dict[Channel, Provider]) -> dict[Channel, str]:
    """Where chat and webhook messages go when a rule names no URL."""
    defaults: dict[Channel, str] = {}
    if cfg.slack_webhook_url is not None:
        defaults[Channel.SLACK] = cfg.slack_webhook_url.get_secret_value()
    if cfg.webhook_url:
        defaults[Channel.WEBHOOK] = cfg.webhook_url
    for channel in (Channel.SLACK, Channel.WEBHOOK):
        if providers[channel].name == "outbox":
            defaults.setdefault(channel, f"outbox:{channel.value}")  # the local outbox needs no URL
    return defaults


def dispatch_config(cfg: NotifierSettings) -> DispatchConfig:
    return DispatchConfig(
        max_attempts=cfg.max_attempts,
        retry_base_s=cfg.retry_base_s,
        retry_cap_s=cfg.retry_cap_s,
        interval_s=cfg.dispatch_interval_s,
        concurrency=cfg.dispatch_concurrency,
        batch=cfg.dispatch_batch,
        attempt_timeout_s=cfg.provider_timeout_s * PHASES + 1,
        lease_grace_s=cfg.lease_grace_s,
        daily_cap=cfg.daily_cap,
        address_cap=cfg.daily_cap_per_address,
        source_cap=cfg.daily_cap_per_source,
        address_keys=AddressKeys(cfg.address_hasher_for(cfg.environment)),
        quiet=cfg.quiet_window,
        default_zone=cfg.default_zone,
        public_base_url=cfg.public_base_url,
        unsubscribe_mailto=cfg.unsubscribe_mailto,
        allow_http_links=cfg.environment != "prod",
    )


def reconcile_config(cfg: NotifierSettings) -> ReconcileConfig:
    return ReconcileConfig(
        enabled=cfg.reconcile_unknown,
        settle_s=cfg.reconcile_settle_s,
        interval_s=cfg.reconcile_interval_s,
        lookups_per_minute=cfg.reconcile_lookups_per_minute,
        max_age_s=cfg.reconcile_max_age_s,
    )


def consumer_handler(intake: Intake) -> Handler:
    """The intake on the consumer's transaction (which also stores the offsets)."""

    async def handle(conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        return await intake.handle(PgDeliveries(conn), batch)

    return handle


def _lifespan(
    *,
    runtime: ConsumerRuntime,
    dispatcher: Dispatcher,
    reconciler: Reconciler,
    listener: WakeListener | None,
    providers: dict[Channel, Provider],
    auth: Authenticator,
    erasure: ConsumerRuntime,
    retention: RetentionJob,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info("providers", **{f"{ch.value}_provider": p.name for ch, p in providers.items()})
        await runtime.start()
        await auth.start()
        await erasure.start()
        await retention.start()
        await dispatcher.start()
        await reconciler.start()
        if listener is not None:
            await listener.start()
        yield
        if listener is not None:
            await listener.stop()
        await reconciler.stop()
        await dispatcher.stop()
        await retention.stop()
        await erasure.stop()
        await auth.stop()
        await runtime.stop()
        for p in {id(p): p for p in providers.values()}.values():
            await p.aclose()

    return lifespan


@dataclass(frozen=True)
class Loops:
    """The background loops besides sending: the notification consumer, retention and erasure."""

    runtime: ConsumerRuntime
    retention: RetentionJob
    erasure: ConsumerRuntime


@dataclass(frozen=True)
class Sending:
    """What sends and re-checks messages, and what the routes share with it."""

    dispatcher: Dispatcher
    reconciler: Reconciler
    listener: WakeListener | None
    templates: Templates
    tokens: UnsubscribeTokens


def build_loops(cfg: NotifierSettings, *, engine: AsyncEngine, intake: Intake, keys: AddressKeys) -> Loops:
    runtime = ConsumerRuntime(
        name="notifier",
        settings=cfg,
        topics=[cfg.topics.notifications],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_notifier,
        handler=consumer_handler(intake),
        max_batch=cfg.max_batch,
        min_batch_interval_ms=cfg.min_batch_interval_ms,
        top_up=True,
        engine=engine,
    )
    privacy = NotifierErasure(keys=keys, outbox_dir=cfg.outbox_dir)
    retention = RetentionJob(
        service="notifier",
        engine=engine,
        purge=privacy.purge_expired,
        settings=cfg,
        clock=lambda: datetime.now(UTC),
    )
    erasure = erasure_runtime(
        service="notifier",
        settings=cfg,
        group=f"{cfg.consumer_group}-erasure",
        topic=cfg.topics.customers_erased,
        dlq_topic=cfg.topics.dlq_notifier,
        scrub=privacy.scrub,
        engine=engine,
    )
    return Loops(runtime=runtime, retention=retention, erasure=erasure)


def build_sending(
    cfg: NotifierSettings,
    *,
    store: PgNotifierStore,
    providers: dict[Channel, Provider],
    runtime: ConsumerRuntime,
    dispatch: DispatchConfig,
) -> Sending:
    async def publish(records: Sequence[OutgoingRecord]) -> None:
        if runtime.producer is None:
            raise PublisherUnavailable("producer not connected yet")
        await send_all(runtime.producer, records, timeout_s=cfg.kafka_request_timeout_s * 2)

    templates = Templates()
    tokens = UnsubscribeTokens(cfg.unsubscribe_secrets, accept_sha1=cfg.unsubscribe_accept_sha1)
    dispatcher = Dispatcher(
        store=store,
        providers=providers,
        templates=templates,
        tokens=tokens,
        topics=cfg.topics,
        publish=publish,
        default_addresses=default_addresses(cfg, providers),
        config=dispatch,
    )
    reconciler = Reconciler(
        store=store, providers=providers, topics=cfg.topics, dispatch=dispatch, config=reconcile_config(cfg)
    )
    listener = (
        WakeListener(database_url=cfg.database_url, wake=dispatcher.wake) if cfg.dispatch_listen else None
    )
    return Sending(dispatcher, reconciler, listener, templates, tokens)


def mount_routes(
    app: FastAPI,
    cfg: NotifierSettings,
    *,
    engine: AsyncEngine,
    store: PgNotifierStore,
    sending: Sending,
    auth: Authenticator,
    keys: AddressKeys,
) -> None:
    deps = NotifierDeps(
        deliveries=store,
        suppressions=store,
        tokens=sending.tokens,
        auth=auth,
        audit=PgIdentityStore(engine=engine, timeout_s=10.0),  # after the change: wait rather than lose it
        address_keys=keys,
        templates=sending.templates,
        public_base_url=cfg.public_base_url,
    )
    for routes in (unsubscribe, outbox, deliveries, suppressions, previews):
        app.include_router(routes.router(deps))
    # GDPR export: gdpr:admin (admin role only), checked by this service's own Authenticator.
    guard = Depends(deps.auth.require(Scope.GDPR_ADMIN))
    app.include_router(export_router(SqlExport(engine, export_customer), guard))


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    cfg = settings or NotifierSettings()
    configure_logging(service="notifier", level=cfg.log_level, fmt=cfg.log_format)
    engine = make_engine(
        cfg.database_url,
        pool_size=cfg.db_pool_size,
        application_name="csat-notifier",
        ping_idle_s=cfg.db_ping_idle_s,
    )
    store = PgNotifierStore(engine)
    providers = build_providers(cfg, engine=engine)
    intake = Intake(provider_names={ch: p.name for ch, p in providers.items()})
    dispatch = dispatch_config(cfg)
    loops = build_loops(cfg, engine=engine, intake=intake, keys=dispatch.address_keys)
    sending = build_sending(cfg, store=store, providers=providers, runtime=loops.runtime, dispatch=dispatch)
    identity = PgIdentityStore(engine=engine, timeout_s=2.0)
    auth = service_authenticator(
        service="notifier", identity=cfg, environment=cfg.environment, tokens=identity
    )
    app = FastAPI(
        title="CSAT notifier",
        version="1.0.0",
        lifespan=_lifespan(
            runtime=loops.runtime,
            dispatcher=sending.dispatcher,
            reconciler=sending.reconciler,
            listener=sending.listener,
            providers=providers,
            auth=auth,
            erasure=loops.erasure,
            retention=loops.retention,
        ),
        description="Sends email, SMS and chat messages once per notification, through providers.",
    )
    app.state.runtime = loops.runtime
    app.state.retention = loops.retention
    app.add_middleware(JsonTextGuard)  # suppressions and previews: no NUL or lone surrogate reaches them

    async def check_dispatcher() -> None:
        sending.dispatcher.check()

    checks = {"database": loops.runtime.check_database, "consumer": loops.runtime.check_consumer}
    install_common(
        app,
        service="notifier",
        checks={**checks, "dispatcher": check_dispatcher},
        internal_port=cfg.internal_port,
        documents_public=cfg.environment != "prod",
    )
    mount_routes(app, cfg, engine=engine, store=store, sending=sending, auth=auth, keys=dispatch.address_keys)
    return app
