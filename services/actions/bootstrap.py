"""The actions composition root: settings -> rules, taxonomy, policy, stores, consumer runtime and timer
scheduler; ``create_app`` builds the FastAPI app with the routers. Only wiring, no decisions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import structlog
from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.actions.deps import ActionsDeps
from services.actions.dryrun import DryRunner
from services.actions.engine import Policy
from services.actions.facts import HistoryWindow
from services.actions.handlers import ActionsHandler, utc_now
from services.actions.health.model import load_health_file
from services.actions.health_handler import HealthHandler
from services.actions.repository import PgTransactions, consumer_handler
from services.actions.repository.erasure import export_customer, purge_expired, scrub_customer
from services.actions.routes import accounts, alerts, customers, dryrun, health_models, ops, revisions, rules
from services.actions.routes import surveys as survey_routes
from services.actions.rulebook import RuleBook
from services.actions.rules import RuleSet, load_rules_file, parse_document
from services.actions.scheduler import Scheduler
from services.actions.settings import ActionsSettings
from services.actions.survey_handler import LinkMaker, SurveyHandler
from services.actions.survey_watch import SurveyWatch
from services.actions.surveybook import SurveyBook
from services.actions.surveys.definitions import load_surveys_text
from services.actions.verbatims import Taxonomy, load_taxonomy_file
from services.actions.yamlio import load_yaml
from shared.db import make_engine
from shared.envelope import OutgoingRecord
from shared.erasure import SqlExport, erasure_runtime, export_router
from shared.http import install_common
from shared.identity.guard import Authenticator
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import Scope
from shared.identity.wiring import service_authenticator
from shared.kafka import send_all
from shared.limits import BodySizeLimitMiddleware
from shared.logs import configure_logging
from shared.retention import RetentionJob
from shared.runtime import ConsumerRuntime
from shared.textguard import JsonTextGuard

log = structlog.get_logger(__name__)
#: How long an audit append may wait for PostgreSQL (token lookups keep their 2 s and answer 503).
AUDIT_TIMEOUT_S = 10.0


def customer_ref(cfg: ActionsSettings) -> Callable[[str], str]:
    """How audit entries name a customer: by a keyed hash, never by id (docs/security.md, audit log)."""
    hasher = cfg.address_hasher_for(cfg.environment)
    return lambda customer_id: f"customer#{hasher.customer(customer_id)}"


def build_policy(cfg: ActionsSettings, taxonomy: Taxonomy) -> Policy:
    return Policy(
        default_csm_email=cfg.default_csm_email,
        default_locale=cfg.default_locale,
        support_email=cfg.support_email,
        escalation_email=cfg.escalation_email,
        csm_managers=cfg.csm_managers,
        daily_cap=cfg.daily_cap,
        survey_url_template=cfg.survey_url_template,
        alert_url_template=cfg.alert_url_template,
        theme_owners={t: o for t in taxonomy.theme_ids if (o := taxonomy.owner(t))},
        theme_default_owner=taxonomy.default_owner,
        segment_owners=cfg.segment_owners,
        segment_default_owner=cfg.segment_default_owner,
    )


def build_rulebook(cfg: ActionsSettings, file_rules: RuleSet) -> RuleBook:
    """The rules file seeds the stored rule set."""
    document = parse_document(cfg.rules_file.read_text(encoding="utf-8"), origin=str(cfg.rules_file))
    return RuleBook(
        file_document=document,
        file_rules=file_rules,
        file_origin=str(cfg.rules_file),
        outbound=cfg.outbound_policy(cfg.environment),
    )


def build_surveybook(cfg: ActionsSettings) -> SurveyBook:
    """The surveys file seeds the stored survey set (a broken file stops the service here)."""
    text = cfg.surveys_file.read_text(encoding="utf-8")
    return SurveyBook(
        file_document=load_yaml(text),
        file_surveys=load_surveys_text(text, origin=str(cfg.surveys_file)),
        file_origin=str(cfg.surveys_file),
    )


def build_runtime(cfg: ActionsSettings, handler: ActionsHandler) -> ConsumerRuntime:
    """The consumer of ratings, segment alerts (scores topic) and usage, with its engine and producer."""
    return ConsumerRuntime(
        name="actions",
        settings=cfg,
        topics=[
            cfg.topics.ratings,
            cfg.topics.scores,
            cfg.topics.interactions,
            cfg.topics.outcomes,
            cfg.topics.usage,
        ],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_actions,
        handler=consumer_handler(handler),
        max_batch=cfg.max_batch,
        min_batch_interval_ms=cfg.min_batch_interval_ms,
        top_up=True,
        engine=make_engine(
            cfg.database_url,
            pool_size=cfg.db_pool_size,
            application_name="csat-actions",
            ping_idle_s=cfg.db_ping_idle_s,
        ),
    )


@dataclass(frozen=True, slots=True)
class Decisions:
    """What decides on each record: the files in force, the policy, and the handlers built from them."""

    file_rules: RuleSet
    rulebook: RuleBook
    taxonomy: Taxonomy
    policy: Policy
    history: HistoryWindow
    surveybook: SurveyBook
    surveys: SurveyHandler
    health: HealthHandler
    handler: ActionsHandler


@dataclass(frozen=True, slots=True)
class Loops:
    """The consumers, jobs and authenticator the lifespan starts and stops, and the stores they share."""

    runtime: ConsumerRuntime
    erasure: ConsumerRuntime
    retention: RetentionJob
    scheduler: Scheduler
    watch: SurveyWatch
    transactions: PgTransactions
    auth: Authenticator


def build_decisions(cfg: ActionsSettings) -> Decisions:
    """Load the rules, taxonomy, surveys and health model (a broken file stops the service here)."""
    file_rules = load_rules_file(cfg.rules_file)  # a broken file stops the service here
    rulebook = build_rulebook(cfg, file_rules)
    taxonomy = load_taxonomy_file(cfg.themes_file)
    policy = build_policy(cfg, taxonomy)
    history = HistoryWindow(
        days=cfg.history_days,
        per_customer=cfg.history_limit,
        trend_size=cfg.trend_size,
        decline_slope=cfg.decline_slope,
    )
    surveybook = build_surveybook(cfg)
    surveys = SurveyHandler(
        book=surveybook,
        topics=cfg.topics,
        links=LinkMaker(base_url=cfg.survey_link_base_url, secret=cfg.signing_secret.get_secret_value()),
        brand=cfg.survey_brand,
    )
    health = HealthHandler(
        model=load_health_file(cfg.health_model_file),  # a broken model stops the service here
        topics=cfg.topics,
        default_owner=cfg.default_csm_email,
    )
    handler = ActionsHandler(
        rulebook=rulebook,
        taxonomy=taxonomy,
        policy=policy,
        topics=cfg.topics,
        history=history,
        surveys=surveys,
        health=health,
    )
    return Decisions(
        file_rules=file_rules,
        rulebook=rulebook,
        taxonomy=taxonomy,
        policy=policy,
        history=history,
        surveybook=surveybook,
        surveys=surveys,
        health=health,
        handler=handler,
    )


def build_loops(cfg: ActionsSettings, decisions: Decisions) -> Loops:
    """The main and erasure consumers, retention, timer scheduler, survey watch and authenticator."""
    runtime = build_runtime(cfg, decisions.handler)
    erasure = erasure_runtime(
        service="actions",
        settings=cfg,
        group=f"{cfg.consumer_group}-erasure",
        topic=cfg.topics.customers_erased,
        dlq_topic=cfg.topics.dlq_actions,
        scrub=scrub_customer,
        engine=runtime.engine,
    )
    transactions = PgTransactions(runtime.engine)
    retention = RetentionJob(
        service="actions", engine=runtime.engine, purge=purge_expired, settings=cfg, clock=utc_now
    )
    scheduler = Scheduler(
        transactions=transactions,
        producer=lambda: runtime.producer,
        topics=cfg.topics,
        policy=decisions.policy,
        poll_s=cfg.timer_poll_s,
        batch=cfg.timer_batch,
        surveys=decisions.surveys,
    )
    watch = SurveyWatch(transactions=transactions, clock=utc_now)
    identity = PgIdentityStore(engine=runtime.engine, timeout_s=2.0)
    auth = service_authenticator(
        service="actions", identity=cfg, environment=cfg.environment, tokens=identity
    )
    return Loops(
        runtime=runtime,
        erasure=erasure,
        retention=retention,
        scheduler=scheduler,
        watch=watch,
        transactions=transactions,
        auth=auth,
    )


def lifespan(
    cfg: ActionsSettings, decisions: Decisions, loops: Loops
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the consumers, authenticator, jobs and survey watch; stop them in reverse order."""

    @asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "rules_file",
            file=str(cfg.rules_file),
            rules=len(decisions.file_rules.rules),
            themes=len(decisions.taxonomy.theme_ids),
        )
        await loops.runtime.start()
        await loops.auth.start()
        await loops.erasure.start()
        await loops.retention.start()
        if cfg.scheduler_enabled:
            await loops.scheduler.start()
        stop_watch = asyncio.Event()
        watching = asyncio.create_task(
            loops.watch.run(stop_watch, interval_s=cfg.survey_watch_interval_s), name="actions-survey-watch"
        )
        yield
        stop_watch.set()
        await asyncio.gather(watching, return_exceptions=True)
        await loops.scheduler.stop()
        await loops.retention.stop()
        await loops.erasure.stop()
        await loops.auth.stop()
        await loops.runtime.stop()

    return run


def install_plumbing(app: FastAPI, cfg: ActionsSettings, loops: Loops) -> None:
    """Body limits, probes (database, consumer, scheduler), metrics and documents."""
    runtime, scheduler = loops.runtime, loops.scheduler
    # Added first, so the size limit (added next, outermost) answers before a body is buffered here.
    app.add_middleware(JsonTextGuard, max_bytes=cfg.max_body_bytes)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=cfg.max_body_bytes)

    async def check_scheduler() -> None:
        if cfg.scheduler_enabled and scheduler.last_tick_at is None and runtime.producer is not None:
            raise RuntimeError("scheduler has not run yet")

    install_common(
        app,
        service="actions",
        internal_port=cfg.internal_port,
        documents_public=cfg.environment != "prod",
        checks={
            "database": runtime.check_database,
            "consumer": runtime.check_consumer,
            "scheduler": check_scheduler,
        },
    )


def build_deps(cfg: ActionsSettings, decisions: Decisions, loops: Loops) -> ActionsDeps:
    """What the routes use: the stores, the books in force, the dry runner, auth, audit and publishing."""
    runtime = loops.runtime
    dry_run = DryRunner(
        rulebook=decisions.rulebook,
        taxonomy=decisions.taxonomy,
        policy=decisions.policy,
        history=decisions.history,
        clock=utc_now,
    )

    async def publish(records: Sequence[OutgoingRecord]) -> None:
        if runtime.producer is not None:
            await send_all(runtime.producer, records, timeout_s=10.0)  # as the timer scheduler

    return ActionsDeps(
        settings=cfg,
        transactions=loops.transactions,
        rulebook=decisions.rulebook,
        clock=utc_now,
        dry_run=dry_run,
        surveybook=decisions.surveybook,
        auth=loops.auth,
        # Appended after the change committed: a slow database delays the answer rather than losing it.
        audit=PgIdentityStore(engine=runtime.engine, timeout_s=AUDIT_TIMEOUT_S),
        customer_ref=customer_ref(cfg),
        health=decisions.health,
        publish=publish,
    )


def mount_routers(app: FastAPI, deps: ActionsDeps, engine: AsyncEngine) -> None:
    """Every audience's router, then the GDPR export."""
    for audience in (
        rules,
        revisions,
        dryrun,
        alerts,
        customers,
        accounts,
        health_models,
        ops,
        survey_routes,
    ):
        app.include_router(audience.router(deps))
    # GDPR export: gdpr:admin (admin role only), checked by this service's own Authenticator.
    guard = Depends(deps.auth.require(Scope.GDPR_ADMIN))
    app.include_router(export_router(SqlExport(engine, export_customer), guard))


def create_app(settings: ActionsSettings | None = None) -> FastAPI:
    """Settings -> decisions -> consumers and jobs -> the app with its plumbing and routers."""
    cfg = settings or ActionsSettings()
    configure_logging(service="actions", level=cfg.log_level, fmt=cfg.log_format)
    decisions = build_decisions(cfg)
    loops = build_loops(cfg, decisions)
    app = FastAPI(
        title="CSAT actions",
        version="1.0.0",
        lifespan=lifespan(cfg, decisions, loops),
        description="Follow-up rules on every rating and segment alert; CSM alerts; durable timers.",
    )
    app.state.runtime = loops.runtime
    app.state.scheduler = loops.scheduler
    app.state.retention = loops.retention
    install_plumbing(app, cfg, loops)
    mount_routers(app, build_deps(cfg, decisions, loops), loops.runtime.engine)
    return app
