"""Actions composition root: ratings and segment-alert consumer, timer scheduler, rules/alerts API."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
import yaml
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.actions import repository
from services.actions.engine import (
    AlertDraft,
    Decision,
    EnrolmentDraft,
    Fatigue,
    Policy,
    TimerDraft,
    decide,
    decide_segment,
    summarize_history,
)
from services.actions.publishing import decided_record, notification_record
from services.actions.rules import RuleError, RuleFileError, RuleSet, load_rules_file, parse_document
from services.actions.rulestore import RuleStore, VersionConflict
from services.actions.scheduler import Scheduler
from services.actions.settings import ActionsSettings
from services.actions.verbatims import Analysis, Taxonomy, load_taxonomy_file
from shared import tracing
from shared.auth import admin_guard, presented_key
from shared.consumer import Received
from shared.db import make_engine
from shared.envelope import OutgoingRecord
from shared.events import RatingSubmitted, SegmentAlert
from shared.http import install_common, problem
from shared.limits import BodySizeLimitMiddleware
from shared.logs import configure_logging
from shared.runtime import ConsumerRuntime
from shared.vocabulary import ContactIn

log = structlog.get_logger(__name__)

RULE_HITS = Counter(
    "csat_rule_hits_total", "Rule actions decided, by rule, action and outcome", ["rule", "action", "outcome"]
)
RULES_PROBLEM = "https://csat.dev/problems/invalid-rules"


class CustomerProfileIn(ContactIn):
    """Context the rules use: contact details, value and tier, owner CSM, consent and opt-out."""

    tier: str | None = Field(default=None, max_length=40)
    value: float | None = Field(default=None, ge=0)
    owner_email: EmailStr | None = None
    owner_name: str | None = Field(default=None, max_length=200)
    consent: dict[str, bool] = Field(default_factory=dict, description="contact, review, ...")
    opted_out: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict, description="usage signals and any other facts")


class AlertAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: str | None = Field(default=None, max_length=200, description="Who acknowledges or resolves")
    note: str | None = Field(default=None, max_length=2000)


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


def _decision_row(
    d: Decision, *, decision_id: str, rating_id: str | None, customer_id: str | None, now: datetime
) -> dict[str, Any]:
    note = d.notification
    return {
        "decision_id": decision_id,
        "rule_id": d.rule_id,
        "action": d.action.value,
        "rating_id": rating_id,
        "customer_id": customer_id,
        "notification_id": note.notification_id if note else None,
        "created_at": now,
        "outcome": d.outcome,
        "channel": note.channel.value if note else None,
        "customer_facing": d.customer_facing,
        "ref": d.alert.alert_id if d.alert else None,
    }


def make_handler(
    settings: ActionsSettings, store: RuleStore, taxonomy: Taxonomy, policy: Policy
) -> Callable[[AsyncConnection, Sequence[Received]], Awaitable[list[OutgoingRecord]]]:
    topics = settings.topics

    async def handle(conn: AsyncConnection, batch: Sequence[Received]) -> list[OutgoingRecord]:
        now = datetime.now(UTC)
        out: list[OutgoingRecord] = []
        alerts = [r.envelope.data for r in batch if isinstance(r.envelope.data, SegmentAlert)]
        if alerts:
            out += await on_segment_alerts(conn, (await store.current(conn)).rules, alerts, now)
        ratings = [r.envelope.data for r in batch if isinstance(r.envelope.data, RatingSubmitted)]
        if ratings:
            out += await on_ratings(conn, ratings, now)
        return out

    async def on_segment_alerts(
        conn: AsyncConnection, rules: RuleSet, alerts: list[SegmentAlert], now: datetime
    ) -> list[OutgoingRecord]:
        planned = [
            (a, d) for a in alerts for d in decide_segment(rules=rules, alert=a, now=now, policy=policy)
        ]
        ids = [f"{d.rule_id}/{a.alert_id}/{d.index}" for a, d in planned]
        done = await repository.existing_decisions(conn, ids)
        rows: list[dict[str, Any]] = []
        out: list[OutgoingRecord] = []
        for (alert, d), decision_id in zip(planned, ids, strict=True):
            if decision_id in done:
                continue  # the scorer published this alert again
            done.add(decision_id)
            RULE_HITS.labels(d.rule_id, d.action.value, d.outcome).inc()
            row = _decision_row(d, decision_id=decision_id, rating_id=None, customer_id=None, now=now)
            rows.append({**row, "ref": alert.segment})
            for note in d.notifications:
                out.append(notification_record(topics, note, key=alert.segment))
        await repository.insert_decisions(conn, rows)
        return out

    async def on_ratings(
        conn: AsyncConnection, ratings: list[RatingSubmitted], now: datetime
    ) -> list[OutgoingRecord]:
        analyses: dict[str, Analysis] = {
            r.rating_id: taxonomy.analyze(r.comment, locale=r.customer.locale) for r in ratings if r.comment
        }
        fresh_ids = await repository.insert_new_ratings(conn, ratings, analyses)
        fresh = [r for r in {r.rating_id: r for r in ratings}.values() if r.rating_id in fresh_ids]
        if not fresh:
            return []
        await store.ensure_seeded(conn)
        # One round trip: answered re-surveys cancelled, rules version, contexts, history, fatigue.
        facts = await repository.load_batch_facts(
            conn,
            [r.customer.id for r in fresh],
            since=min(r.occurred_at for r in fresh) - timedelta(days=settings.history_days),
            per_customer=settings.history_limit,
            now=now,
            commented_customers=[r.customer.id for r in fresh if r.comment and r.comment.strip()],
            survey_ids=[r.survey_id for r in fresh if r.survey_id],
        )
        rules = (await store.at(conn, facts.rules_version)).rules
        contexts, past, fatigue = facts.contexts, facts.past, facts.fatigue
        out: list[OutgoingRecord] = []
        rows: list[dict[str, Any]] = []
        alerts: list[AlertDraft] = []
        timers: list[TimerDraft] = []
        enrolments: list[EnrolmentDraft] = []
        for rating in sorted(fresh, key=lambda r: (r.occurred_at, r.rating_id)):
            tracing.follow(rating)  # what this rating causes continues its trace
            cid = rating.customer.id
            history = summarize_history(
                past.get(cid, []),
                rating_id=rating.rating_id,
                occurred_at=rating.occurred_at,
                normalized=rating.normalized,
                sentiment=rating.sentiment.value,
                trend_size=settings.trend_size,
                decline_slope=settings.decline_slope,
            )
            fat = fatigue.get(cid, Fatigue())
            decisions = decide(
                rules=rules,
                rating=rating,
                ctx=contexts.get(cid),
                history=history,
                now=now,
                policy=policy,
                fatigue=fat,
                analysis=analyses.get(rating.rating_id),
            )
            fired_rules: dict[str, datetime] = dict(fat.last_fired)
            sent = fat.sent_24h
            sequences = set(fat.active_sequences)
            for d in decisions:
                RULE_HITS.labels(d.rule_id, d.action.value, d.outcome).inc()
                decision_id = f"{d.rule_id}/{rating.rating_id}/{d.index}"
                rows.append(
                    _decision_row(
                        d, decision_id=decision_id, rating_id=rating.rating_id, customer_id=cid, now=now
                    )
                )
                if d.skipped is None:
                    fired_rules[d.rule_id] = now
                if d.customer_facing and d.notifications:
                    sent += len(d.notifications)
                if d.alert is not None:
                    alerts.append(d.alert)
                timers.extend(d.timers)
                if d.enrolment is not None:
                    enrolments.append(d.enrolment)
                    sequences.add(d.enrolment.sequence)
                for note in d.notifications:
                    out.append(notification_record(topics, note, key=cid))
                if d.skipped is None:
                    out.append(
                        decided_record(
                            topics,
                            decision_id=decision_id,
                            rule_id=d.rule_id,
                            action=d.action.value,
                            rating_id=rating.rating_id,
                            customer_id=cid,
                            key=cid,
                            at=now,
                        )
                    )
            fatigue[cid] = Fatigue(
                last_fired=fired_rules, sent_24h=sent, active_sequences=frozenset(sequences)
            )
        await repository.insert_outcomes(conn, decisions=rows, alerts=alerts, timers=timers, now=now)
        await repository.insert_enrolments(conn, enrolments, now=now)
        return out

    return handle


def key_guard(*secrets: Any) -> Callable[..., Awaitable[None]]:
    """Any of the given keys (admin, CSM) is accepted; 401 without a key, 403 with a wrong one."""
    expected = [s.get_secret_value().encode() for s in secrets if s is not None]

    async def guard(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None,
    ) -> None:
        key = presented_key(authorization, x_api_key)
        if key is None:
            raise HTTPException(401, "an API key is required", headers={"WWW-Authenticate": "Bearer"})
        if not any(hmac.compare_digest(key.encode(), e) for e in expected):
            raise HTTPException(403, "this key may not use this endpoint")

    return guard


def _invalid_rules(exc: RuleFileError) -> JSONResponse:
    first = exc.errors[0]
    return problem(
        422,
        "Invalid rules",
        detail=str(first),
        type_=RULES_PROBLEM,
        errors=[{"field": e.field, "rule": e.rule, "message": e.message} for e in exc.errors],
        rule=first.rule,
    )


async def _read_document(request: Request) -> Any:
    """A rules document (or one rule) as YAML or JSON, by Content-Type; YAML when unsure."""
    raw = await request.body()
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleFileError("request", [RuleError(None, "body", "the body is not UTF-8")]) from exc
    if "json" in (request.headers.get("content-type") or ""):
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise RuleFileError("request", [RuleError(None, "body", f"not valid JSON: {exc}")]) from exc
    return parse_document(body, origin="request")


def _strip_meta(document: Any) -> Any:
    """What GET returns can be PUT back: drop the read-only revision fields."""
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if k not in ("revision", "origin")}
    return document


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    try:
        return int(value.strip().strip("W/").strip('"'))
    except ValueError:
        raise HTTPException(400, 'If-Match must be the rules revision, e.g. "3"') from None


def create_app(settings: ActionsSettings | None = None) -> FastAPI:
    cfg = settings or ActionsSettings()
    configure_logging(service="actions", level=cfg.log_level, fmt=cfg.log_format)
    file_text = cfg.rules_file.read_text(encoding="utf-8")
    file_rules = load_rules_file(cfg.rules_file)  # a broken file stops the service here
    taxonomy = load_taxonomy_file(cfg.themes_file)
    store = RuleStore(
        file_document=parse_document(file_text, origin=str(cfg.rules_file)),
        file_rules=file_rules,
        file_origin=str(cfg.rules_file),
    )
    policy = build_policy(cfg, taxonomy)
    runtime = ConsumerRuntime(
        name="actions",
        settings=cfg,
        topics=[cfg.topics.ratings, cfg.topics.scores],
        group=cfg.consumer_group,
        dlq_topic=cfg.topics.dlq_actions,
        handler=make_handler(cfg, store, taxonomy, policy),
        max_batch=cfg.max_batch,
        top_up=True,
        engine=make_engine(
            cfg.database_url,
            pool_size=cfg.db_pool_size,
            application_name="csat-actions",
            ping_idle_s=cfg.db_ping_idle_s,
        ),
    )
    scheduler = Scheduler(
        engine=runtime.engine,
        producer=lambda: runtime.producer,
        topics=cfg.topics,
        policy=policy,
        poll_s=cfg.timer_poll_s,
        batch=cfg.timer_batch,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "rules_file",
            file=str(cfg.rules_file),
            rules=len(file_rules.rules),
            themes=len(taxonomy.theme_ids),
        )
        await runtime.start()
        if cfg.scheduler_enabled:
            await scheduler.start()
        yield
        await scheduler.stop()
        await runtime.stop()

    app = FastAPI(
        title="CSAT actions",
        version="1.0.0",
        lifespan=lifespan,
        description="Follow-up rules on every rating and segment alert; CSM alerts; durable timers.",
    )
    app.state.runtime = runtime
    app.state.scheduler = scheduler
    app.state.store = store
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=cfg.max_body_bytes)

    async def check_scheduler() -> None:
        if cfg.scheduler_enabled and scheduler.last_tick_at is None and runtime.producer is not None:
            raise RuntimeError("scheduler has not run yet")

    install_common(
        app,
        service="actions",
        checks={
            "database": runtime.check_database,
            "consumer": runtime.check_consumer,
            "scheduler": check_scheduler,
        },
    )
    admin = [Depends(admin_guard(cfg.admin_api_key))]
    staff = [Depends(key_guard(cfg.admin_api_key, cfg.csm_api_key))]

    # ---- rules (admin) -----------------------------------------------------------------------------
    def rules_body(current: Any) -> dict[str, Any]:
        doc = current.document if isinstance(current.document, dict) else {}
        return {"revision": current.version, "origin": current.origin, **doc}

    @app.get(
        "/v1/rules",
        tags=["rules"],
        summary="The rule set in force (JSON, or ?format=yaml)",
        dependencies=admin,
    )
    async def get_rules(format: Literal["json", "yaml"] = "json") -> Any:
        async with runtime.engine.begin() as conn:
            current = await store.current(conn)
        headers = {"ETag": f'"{current.version}"'}
        if format == "yaml":
            text = f"# revision {current.version} ({current.origin})\n" + yaml.safe_dump(
                current.document, sort_keys=False, allow_unicode=True
            )
            return Response(text, media_type="application/yaml", headers=headers)
        return JSONResponse(rules_body(current), headers=headers)

    @app.get("/v1/rules/versions", tags=["rules"], summary="Revision history", dependencies=admin)
    async def get_rule_versions(limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Any:
        async with runtime.engine.connect() as conn:
            return {"versions": await repository.list_rule_versions(conn, limit=limit)}

    @app.post(
        "/v1/rules/validate",
        tags=["rules"],
        summary="Check a rules document without storing it",
        dependencies=admin,
    )
    async def validate_rules(request: Request) -> Any:
        from services.actions.rules import parse_rules

        try:
            rules = parse_rules(_strip_meta(await _read_document(request)), origin="request")
        except RuleFileError as exc:
            return _invalid_rules(exc)
        return {"valid": True, "rules": [r.id for r in rules.rules], "sequences": sorted(rules.sequences)}

    @app.put(
        "/v1/rules", tags=["rules"], summary="Replace the whole rule set (YAML or JSON)", dependencies=admin
    )
    async def put_rules(request: Request, if_match: Annotated[str | None, Header()] = None) -> Any:
        try:
            document = _strip_meta(await _read_document(request))
            async with runtime.engine.begin() as conn:
                current = await store.replace(conn, document, expected_version=_if_match(if_match))
        except RuleFileError as exc:
            return _invalid_rules(exc)
        except VersionConflict as exc:
            return problem(412, "Precondition Failed", detail=str(exc), revision=exc.current)
        log.info("rules_replaced", revision=current.version, rules=len(current.rules.rules))
        return JSONResponse(rules_body(current), headers={"ETag": f'"{current.version}"'})

    @app.get("/v1/rules/{rule_id}", tags=["rules"], summary="One rule", dependencies=admin)
    async def get_rule(rule_id: str) -> Any:
        async with runtime.engine.begin() as conn:
            current = await store.current(conn)
        for item in current.document.get("rules", []) if isinstance(current.document, dict) else []:
            if isinstance(item, dict) and item.get("id") == rule_id:
                return {"revision": current.version, "rule": item}
        return problem(404, "Not Found", detail=f"no rule {rule_id!r}")

    @app.put("/v1/rules/{rule_id}", tags=["rules"], summary="Create or replace one rule", dependencies=admin)
    async def put_rule(
        request: Request,
        rule_id: Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")],
        if_match: Annotated[str | None, Header()] = None,
    ) -> Any:
        try:
            item = await _read_document(request)
            if not isinstance(item, dict):
                raise RuleFileError(
                    "request", [RuleError(rule_id, "body", "one rule as a mapping is expected")]
                )
            if item.get("id", rule_id) != rule_id:
                raise RuleFileError(
                    "request", [RuleError(rule_id, "id", "the id in the body differs from the path")]
                )
            async with runtime.engine.begin() as conn:
                current, created = await store.edit(
                    conn, put={**item, "id": rule_id}, expected_version=_if_match(if_match)
                )
        except RuleFileError as exc:
            return _invalid_rules(exc)
        except VersionConflict as exc:
            return problem(412, "Precondition Failed", detail=str(exc), revision=exc.current)
        log.info("rule_saved", rule=rule_id, revision=current.version, created=created)
        return JSONResponse(
            {"revision": current.version, "rule": {**item, "id": rule_id}},
            status_code=201 if created else 200,
            headers={"ETag": f'"{current.version}"'},
        )

    @app.delete("/v1/rules/{rule_id}", tags=["rules"], summary="Delete one rule", dependencies=admin)
    async def delete_rule(rule_id: str, if_match: Annotated[str | None, Header()] = None) -> Any:
        try:
            async with runtime.engine.begin() as conn:
                current, _ = await store.edit(conn, delete=rule_id, expected_version=_if_match(if_match))
        except KeyError:
            return problem(404, "Not Found", detail=f"no rule {rule_id!r}")
        except RuleFileError as exc:
            return _invalid_rules(exc)
        except VersionConflict as exc:
            return problem(412, "Precondition Failed", detail=str(exc), revision=exc.current)
        log.info("rule_deleted", rule=rule_id, revision=current.version)
        return {"revision": current.version, "deleted": rule_id}

    # ---- alerts (admin or CSM key) -----------------------------------------------------------------
    @app.get("/v1/alerts", tags=["alerts"], summary="CSM alerts, newest first", dependencies=staff)
    async def get_alerts(
        status: Literal["open", "acknowledged", "resolved"] | None = None,
        owner: str | None = None,
        customer_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        async with runtime.engine.connect() as conn:
            items = await repository.list_alerts(
                conn, status=status, owner=owner, customer_id=customer_id, limit=limit
            )
        return {"alerts": items}

    @app.get("/v1/alerts/{alert_id}", tags=["alerts"], summary="One alert", dependencies=staff)
    async def get_alert(alert_id: str) -> Any:
        async with runtime.engine.connect() as conn:
            found = await repository.get_alert(conn, alert_id)
        return found if found is not None else problem(404, "Not Found", detail="no such alert")

    async def _transition(alert_id: str, body: AlertAction | None, to: str) -> Any:
        action = body or AlertAction()
        async with runtime.engine.begin() as conn:
            found, error = await repository.transition_alert(
                conn, alert_id, to=to, by=action.by, note=action.note, now=datetime.now(UTC)
            )
        if error == "not_found":
            return problem(404, "Not Found", detail="no such alert")
        if error is not None:
            return problem(409, "Conflict", detail=f"the alert is {error}", alert=found)
        return found

    @app.post(
        "/v1/alerts/{alert_id}/ack",
        tags=["alerts"],
        summary="Acknowledge (stops the SLA escalation)",
        dependencies=staff,
    )
    async def ack_alert(alert_id: str, body: AlertAction | None = None) -> Any:
        return await _transition(alert_id, body, "acknowledged")

    @app.post("/v1/alerts/{alert_id}/resolve", tags=["alerts"], summary="Resolve", dependencies=staff)
    async def resolve_alert(alert_id: str, body: AlertAction | None = None) -> Any:
        return await _transition(alert_id, body, "resolved")

    # ---- customers, decisions, timers (admin) ------------------------------------------------------
    @app.put(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        summary="Set a customer's context",
        dependencies=admin,
    )
    async def put_customer(
        body: CustomerProfileIn, customer_id: Annotated[str, Path(min_length=1, max_length=200)]
    ) -> Any:
        async with runtime.engine.begin() as conn:
            await repository.upsert_customer(conn, customer_id, body.model_dump(mode="json"))
            if body.opted_out:
                await repository.stop_customer_sequences(conn, customer_id)
            return await repository.get_customer(conn, customer_id)

    @app.get(
        "/v1/customers/{customer_id}",
        tags=["customers"],
        summary="A customer's stored context",
        dependencies=admin,
    )
    async def get_customer(customer_id: str) -> Any:
        async with runtime.engine.connect() as conn:
            found = await repository.get_customer(conn, customer_id)
        if found is None:
            return problem(404, "Not Found", detail="no context stored for this customer")
        return found

    @app.get("/v1/decisions", tags=["rules"], summary="Recent rule decisions", dependencies=admin)
    async def get_decisions(
        customer_id: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> Any:
        async with runtime.engine.connect() as conn:
            return {"decisions": await repository.list_decisions(conn, customer_id=customer_id, limit=limit)}

    @app.get(
        "/v1/timers", tags=["rules"], summary="Durable timers (SLA, re-survey, nurture)", dependencies=admin
    )
    async def get_timers(
        customer_id: str | None = None,
        status: Literal["pending", "fired", "cancelled"] | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Any:
        async with runtime.engine.connect() as conn:
            return {
                "timers": await repository.list_timers(
                    conn, customer_id=customer_id, status=status, limit=limit
                )
            }

    return app
