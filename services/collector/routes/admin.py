"""Operators' routes: sources and their keys (``sources:admin``), email-link minting and SMS surveys
(``surveys:admin``). Every change, identity-secret rotation and survey send is audited
(``identity.audit_log``): sources and keys by id, customers by their keyed hash, never an address."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse, Response

from services.collector.deps import CollectorDeps
from services.collector.inapp import invitation_inapp_survey
from services.collector.links import EmailLink, LinkExpired, LinkInvalid
from services.collector.ports import InAppSurvey, SmsSurvey, SourceExists, StoreUnavailable
from services.collector.problems import ProblemError
from services.collector.routes.admin_models import (
    IdentitySecretOut,
    IdentitySecretRequest,
    InAppSurveyOut,
    InAppSurveyRequest,
    KeyOut,
    KeyRequest,
    LinkRequest,
    LinksOut,
    NewKeyOut,
    ScoreLink,
    SmsSurveyOut,
    SmsSurveyRequest,
    SourceCreated,
    SourceIn,
    SourceOut,
    SourcePatch,
)
from services.collector.sms import invitation_sms_survey, normalize_phone, phone_hash
from shared.events import KeyKind
from shared.identity.auditing import record_change
from shared.identity.ports import AuditAction, AuditDetail
from shared.identity.principal import Principal
from shared.identity.scopes import Scope
from shared.identity.sourcekeys import SourceKeyKind, derive_identity_secret, generate_source_key
from shared.scales import Metric, ScaleError, get_scale
from shared.security.urls import quote_id

Sid = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", examples=["shop-web"])]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{10}$")]
#: Operators' routes, served only on the internal listener when there is one (``CSAT_INTERNAL_PORT``,
#: ``shared.listeners``): sources, keys, identity secrets, survey minting and the GDPR export.
INTERNAL_PREFIXES = ("/v1/sources", "/v1/email-links", "/v1/sms-surveys", "/v1/inapp-surveys", "/v1/gdpr")
#: A PATCH may not set these to null (found by tests/faults/test_auth_fuzz.py: it was a 500).
NOT_NULL_SOURCE_FIELDS = ("name", "allowed_origins", "disabled")
#: Source ids the collector uses itself (anonymous dev posts, email links, SMS replies).
RESERVED_SOURCES = {"dev", "email", "sms", "unknown"}

_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
ADMIN_PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No credential, or one that is not valid", "content": _PROBLEM},
    403: {"description": "A credential without the scope (source keys manage nothing)", "content": _PROBLEM},
    404: {"description": "No such source or key", "content": _PROBLEM},
    409: {"description": "The source exists already", "content": _PROBLEM},
    422: {"description": "Invalid input; `field` names it", "content": _PROBLEM},
    503: {"description": "Database unavailable; retry after `Retry-After`", "content": _PROBLEM},
}


async def _audit(
    deps: CollectorDeps,
    request: Request,
    principal: Principal,
    action: AuditAction,
    *,
    target: str,
    details: Mapping[str, AuditDetail] | None = None,
) -> None:
    """One audit entry for a change that was made (short scalars only: ids, kinds, versions)."""
    if deps.audit is not None:
        await record_change(
            deps.audit,
            request,
            principal,
            action,
            service="collector",
            at=datetime.now(UTC),
            target=target,
            details=details,
        )


def router(deps: CollectorDeps) -> APIRouter:
    """Routes for operators: sources and keys need ``sources:admin``, surveys ``surveys:admin``."""
    # One dependency object per scope, on the router (OpenAPI, every route guarded) and as the routes'
    # ``principal`` parameter: FastAPI caches it per request, so the credential is checked once.
    sources_admin = Depends(deps.auth.require(Scope.SOURCES_ADMIN))
    surveys_admin = Depends(deps.auth.require(Scope.SURVEYS_ADMIN))
    sources = APIRouter(dependencies=[sources_admin], responses=ADMIN_PROBLEMS)
    _create_source_route(sources, deps, sources_admin)
    _source_routes(sources, deps, sources_admin)
    _key_routes(sources, deps, sources_admin)
    _identity_routes(sources, deps, sources_admin)
    surveys = APIRouter(dependencies=[surveys_admin], responses=ADMIN_PROBLEMS)
    _survey_routes(surveys, deps, surveys_admin)
    routes = APIRouter()
    routes.include_router(sources)
    routes.include_router(surveys)
    return routes


def _create_source_route(routes: APIRouter, deps: CollectorDeps, admin: Any) -> None:
    """A new source with its first key (both audited)."""
    retry_after_s = deps.settings.retry_after_s

    @routes.post(
        "/v1/sources",
        status_code=201,
        response_model=SourceCreated,
        tags=["admin"],
        summary="Create a source and its first key",
    )
    async def create_source(body: SourceIn, request: Request, principal: Principal = admin) -> Any:
        if body.source_id in RESERVED_SOURCES:
            raise _invalid("source_id", f"{body.source_id!r} is reserved")
        try:
            created = await deps.sources.create_source(source=body.as_source())
            key = await _new_key(
                deps, source_id=created.source_id, kind=body.key_kind, expire_others_in_s=None
            )
        except SourceExists as exc:
            raise ProblemError(
                409,
                "Conflict",
                detail=f"source {body.source_id!r} exists",
                type_="https://csat.dev/problems/exists",
                field="source_id",
            ) from exc
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc
        target = f"source:{created.source_id}"
        await _audit(deps, request, principal, AuditAction.SOURCE_CREATE, target=target)
        details: dict[str, AuditDetail] = {"key_id": key.key_id, "kind": key.kind.value}
        await _audit(deps, request, principal, AuditAction.SOURCE_KEY_CREATE, target=target, details=details)
        return JSONResponse(
            SourceCreated(source=SourceOut.of(created), key=key).model_dump(mode="json"), status_code=201
        )


def _source_routes(routes: APIRouter, deps: CollectorDeps, admin: Any) -> None:
    """List, read, change and delete sources (changes forget the cached source and are audited)."""
    retry_after_s = deps.settings.retry_after_s

    @routes.get("/v1/sources", tags=["admin"], summary="List sources")
    async def list_sources() -> dict[str, list[SourceOut]]:
        try:
            return {"sources": [SourceOut.of(s) for s in await deps.sources.list_sources()]}
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc

    @routes.get("/v1/sources/{source_id}", response_model=SourceOut, tags=["admin"], summary="One source")
    async def get_source(source_id: Sid) -> SourceOut:
        try:
            found = await deps.sources.get_source(source_id=source_id)
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc
        if found is None:
            raise _not_found("source")
        return SourceOut.of(found)

    @routes.patch(
        "/v1/sources/{source_id}",
        response_model=SourceOut,
        tags=["admin"],
        summary="Change a source (origins, limits, disabled)",
    )
    async def patch_source(
        source_id: Sid, body: SourcePatch, request: Request, principal: Principal = admin
    ) -> SourceOut:
        changes = body.model_dump(exclude_unset=True)
        for field in NOT_NULL_SOURCE_FIELDS:  # null resets the limits only; these always have a value
            if field in changes and changes[field] is None:
                raise _invalid(field, "may not be null")
        try:
            found = await deps.sources.update_source(source_id=source_id, changes=changes)
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc
        if found is None:
            raise _not_found("source")
        _forget_cached(deps)
        # Which settings changed, not their values (origins and names are the operator's free text).
        changed: dict[str, AuditDetail] = {"changed": ",".join(sorted(changes))}
        if "disabled" in changes:
            changed["disabled"] = bool(changes["disabled"])
        await _audit(
            deps, request, principal, AuditAction.SOURCE_UPDATE, target=f"source:{source_id}", details=changed
        )
        return SourceOut.of(found)

    @routes.delete(
        "/v1/sources/{source_id}", status_code=204, tags=["admin"], summary="Delete a source and its keys"
    )
    async def delete_source(source_id: Sid, request: Request, principal: Principal = admin) -> Response:
        try:
            deleted = await deps.sources.delete_source(source_id=source_id)
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc
        if not deleted:
            raise _not_found("source")
        _forget_cached(deps)
        await _audit(deps, request, principal, AuditAction.SOURCE_DELETE, target=f"source:{source_id}")
        return Response(status_code=204)


def _key_routes(routes: APIRouter, deps: CollectorDeps, admin: Any) -> None:
    retry_after_s = deps.settings.retry_after_s

    @routes.post(
        "/v1/sources/{source_id}/keys",
        status_code=201,
        response_model=NewKeyOut,
        tags=["admin"],
        summary="Add a publishable or secret key (rotation: optionally expire the others of its kind)",
    )
    async def add_key(
        source_id: Sid, request: Request, body: KeyRequest | None = None, principal: Principal = admin
    ) -> Any:
        try:
            if await deps.sources.get_source(source_id=source_id) is None:
                raise _not_found("source")
            others = body.expire_others_in_s if body else None
            kind = body.kind if body else KeyKind.PUBLISHABLE
            key = await _new_key(deps, source_id=source_id, kind=kind, expire_others_in_s=others)
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc
        details: dict[str, AuditDetail] = {"key_id": key.key_id, "kind": key.kind.value}
        if others is not None:
            details["expire_others_in_s"] = others
        await _audit(
            deps,
            request,
            principal,
            AuditAction.SOURCE_KEY_CREATE,
            target=f"source:{source_id}",
            details=details,
        )
        return JSONResponse(key.model_dump(mode="json"), status_code=201)

    @routes.get(
        "/v1/sources/{source_id}/keys",
        tags=["admin"],
        summary="List a source's keys (never the keys themselves)",
    )
    async def list_keys(source_id: Sid) -> dict[str, list[KeyOut]]:
        try:
            return {"keys": [KeyOut.of(k) for k in await deps.sources.list_keys(source_id=source_id)]}
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc

    @routes.delete(
        "/v1/sources/{source_id}/keys/{key_id}", status_code=204, tags=["admin"], summary="Revoke a key"
    )
    async def revoke_key(
        source_id: Sid, key_id: KeyId, request: Request, principal: Principal = admin
    ) -> Response:
        try:
            revoked = await deps.sources.revoke_key(source_id=source_id, key_id=key_id)
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc
        if not revoked:
            raise _not_found("key")
        _forget_cached(deps)
        target, details = f"source:{source_id}", {"key_id": key_id}
        await _audit(deps, request, principal, AuditAction.SOURCE_KEY_REVOKE, target=target, details=details)
        return Response(status_code=204)


def _identity_routes(routes: APIRouter, deps: CollectorDeps, admin: Any) -> None:
    retry_after_s = deps.settings.retry_after_s

    @routes.post(
        "/v1/sources/{source_id}/identity-secret",
        response_model=IdentitySecretOut,
        tags=["admin"],
        summary="The secret the site's servers sign customer ids with (rotate: issue a new one)",
        description="Derived from CSAT_SOURCE_IDENTITY_KEY, never stored. The site's server computes a "
        "proof of each customer id with it; a rating posted with a publishable key and a valid proof "
        "is that customer's (docs/collector.md). After a rotation the previous secret keeps verifying "
        "for CSAT_IDENTITY_SECRET_GRACE_H.",
    )
    async def identity_secret(
        source_id: Sid,
        request: Request,
        body: IdentitySecretRequest | None = None,
        principal: Principal = admin,
    ) -> IdentitySecretOut:
        now = datetime.now(UTC)
        rotate = body is not None and body.rotate
        try:
            if rotate:
                found = await deps.sources.rotate_identity(source_id=source_id, now=now)
                _forget_cached(deps)
            else:
                found = await deps.sources.get_source(source_id=source_id)
        except StoreUnavailable as exc:
            raise _db_down(retry_after_s) from exc
        if found is None:
            raise _not_found("source")
        # Reading the secret is audited too: whoever holds it can vouch for any customer of the source.
        details: dict[str, AuditDetail] = {
            "identity_secret": "rotated" if rotate else "read",
            "version": found.identity_version,
        }
        await _audit(
            deps, request, principal, AuditAction.SOURCE_UPDATE, target=f"source:{source_id}", details=details
        )
        grace = timedelta(hours=deps.settings.identity_secret_grace_h)
        rotated = found.identity_rotated_at
        return IdentitySecretOut(
            source_id=found.source_id,
            version=found.identity_version,
            identity_secret=derive_identity_secret(
                platform_key=deps.settings.identity_platform_key,
                source_id=found.source_id,
                version=found.identity_version,
            ),
            previous_valid_until=rotated + grace
            if rotated is not None and found.identity_version > 1
            else None,
        )


def _survey_routes(routes: APIRouter, deps: CollectorDeps, admin: Any) -> None:
    async def sent(
        request: Request,
        principal: Principal,
        channel: str,
        body: LinkRequest | SmsSurveyRequest | InAppSurveyRequest,
        *,
        metric: str | None = None,
    ) -> None:
        """A survey went out: to which customer (keyed hash), on which channel and metric; no address."""
        target = f"customer#{deps.phone_hasher.customer(body.customer.id)}"
        if metric is None:
            assert not isinstance(body, InAppSurveyRequest)
            metric = body.metric.value
        details: dict[str, AuditDetail] = {"channel": channel, "metric": metric}
        await _audit(deps, request, principal, AuditAction.SURVEY_SEND, target=target, details=details)

    @routes.post(
        "/v1/email-links",
        status_code=201,
        response_model=LinksOut,
        tags=["admin", "email"],
        summary="Mint one-click rating links for one (survey, customer)",
        description="Put one link per score in the email. Opening a link shows a confirm page (mail "
        "scanners open links too); only its POST records the rating, once per (survey, customer).",
    )
    async def mint_links(body: LinkRequest, request: Request, principal: Principal = admin) -> Any:
        out = _mint(deps, body)
        await sent(request, principal, "email", body)
        return JSONResponse(out.model_dump(mode="json"), status_code=201)

    @routes.post(
        "/v1/sms-surveys",
        status_code=201,
        response_model=SmsSurveyOut,
        tags=["admin", "sms"],
        summary="Record that a survey SMS was sent, so the reply can be matched to the customer",
        description="Call this when the survey SMS goes out. A reply from that number ('4' or "
        "'4 great service') to the Twilio webhook then becomes a rating for this customer. "
        "The phone number is kept only as a keyed hash.",
    )
    async def add_sms_survey(body: SmsSurveyRequest, request: Request, principal: Principal = admin) -> Any:
        out = await _add_sms_survey(deps, body)
        await sent(request, principal, "sms", body)
        return JSONResponse(out.model_dump(mode="json"), status_code=201)

    @routes.post(
        "/v1/inapp-surveys",
        status_code=201,
        response_model=InAppSurveyOut,
        tags=["admin", "widget"],
        summary="Keep a survey invitation for the web widget (the in-app channel)",
        description="Call this instead of emailing the invitation: the widget of that customer, once "
        "proven (publishable key and the site's customer proof), gets it from POST /v1/widget/invitation "
        "and answers through the signed link until the answer window ends. Registering it again changes "
        "nothing.",
    )
    async def add_inapp_survey(
        body: InAppSurveyRequest, request: Request, principal: Principal = admin
    ) -> Any:
        link, survey = _inapp_survey(deps, body)
        try:
            await deps.surveys.add_inapp_survey(survey=survey)
        except StoreUnavailable as exc:
            raise _db_down(deps.settings.retry_after_s) from exc
        await sent(request, principal, "in_app", body, metric=link.metric)
        out = InAppSurveyOut(request_id=survey.request_id, expires_at=survey.expires_at)
        return JSONResponse(out.model_dump(mode="json"), status_code=201)


def _inapp_survey(deps: CollectorDeps, body: InAppSurveyRequest) -> tuple[EmailLink, InAppSurvey]:
    """An invitation's in-app survey from its signed answer link; what the body also says must agree."""
    token = unquote(body.answer_link.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    try:
        link = deps.signer.verify(token, now=datetime.now(UTC))
    except (LinkInvalid, LinkExpired) as exc:
        raise _invalid("answer_link", str(exc)) from exc
    if body.customer.id != link.customer_id:
        raise _invalid("customer.id", "the answer link belongs to another customer")
    if body.survey_id is not None and body.survey_id != link.survey_id:
        raise _invalid("survey_id", "the answer link is for another survey invitation")
    return link, invitation_inapp_survey(link, token, locale=body.customer.locale)


#: The key prefix of each kind an admin can issue.
_PREFIX = {KeyKind.PUBLISHABLE: SourceKeyKind.PUBLISHABLE, KeyKind.SECRET: SourceKeyKind.SECRET}


async def _new_key(
    deps: CollectorDeps, *, source_id: str, kind: KeyKind, expire_others_in_s: int | None
) -> NewKeyOut:
    """A fresh key for the source; the response is the only time its secret is shown."""
    key = generate_source_key(_PREFIX[kind])
    others = (
        datetime.now(UTC) + timedelta(seconds=expire_others_in_s) if expire_others_in_s is not None else None
    )
    info = await deps.sources.add_key(
        source_id=source_id, key_id=key.key_id, key_hash=key.key_hash, kind=kind, expire_others_at=others
    )
    _forget_cached(deps)
    return NewKeyOut(**KeyOut.of(info).model_dump(), key=key.secret)


def _forget_cached(deps: CollectorDeps) -> None:
    """After an admin change, this replica looks keys and origins up again (others within the TTL)."""
    deps.keys.forget()
    deps.origins.forget()


def _mint(deps: CollectorDeps, body: LinkRequest) -> LinksOut:
    """One signed link per score of the survey's scale, plus the link without a score."""
    try:
        scale = get_scale(body.metric, body.scale)
    except ScaleError as exc:
        raise _invalid(exc.field, str(exc)) from exc
    ttl = timedelta(hours=body.expires_in_h or deps.settings.email_link_ttl_h)
    link = EmailLink(
        survey_id=body.survey_id,
        customer_id=body.customer.id,
        metric=body.metric.value,
        scale=scale.name,
        expires_at=(datetime.now(UTC) + ttl).replace(microsecond=0),
        locale=body.customer.locale,
        touchpoint=body.touchpoint,
        question=body.question,
        segment=dict(body.segment),
    )
    base = f"{deps.settings.base_url}/v1/email/{quote_id(deps.signer.sign(link))}"
    return LinksOut(
        rating_id=link.rating_id,
        expires_at=link.expires_at,
        confirm_url=base,
        links=[ScoreLink(score=s, url=f"{base}?score={s}") for s in scale.scores()],
    )


async def _add_sms_survey(deps: CollectorDeps, body: SmsSurveyRequest) -> SmsSurveyOut:
    """Remember the survey under a keyed hash of the number, so the reply finds its customer."""
    cfg = deps.settings
    try:
        phone = normalize_phone(body.phone)
    except ValueError as exc:
        raise _invalid("phone", str(exc)) from exc
    if body.answer_link is not None:
        survey = _invitation_survey(deps, body)
        scale = get_scale(Metric(survey.metric), survey.scale)
    else:
        try:
            scale = get_scale(body.metric, body.scale)
        except ScaleError as exc:
            raise _invalid(exc.field, str(exc)) from exc
        survey = _plain_survey(deps, body, scale_name=scale.name)
    try:
        await deps.surveys.add_sms_survey(survey=survey, phone_hash=phone_hash(deps.phone_hasher, phone))
    except StoreUnavailable as exc:
        raise _db_down(cfg.retry_after_s) from exc
    hint = f"Reply with a number from {scale.low} to {scale.high}, and a comment if you like."
    return SmsSurveyOut(request_id=survey.request_id, expires_at=survey.expires_at, reply_hint=hint)


def _invitation_survey(deps: CollectorDeps, body: SmsSurveyRequest) -> SmsSurvey:
    """An invitation's SMS survey from its signed answer link; what the body also says must agree."""
    assert body.answer_link is not None
    token = unquote(body.answer_link.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
    try:
        link = deps.signer.verify(token, now=datetime.now(UTC))
    except (LinkInvalid, LinkExpired) as exc:
        raise _invalid("answer_link", str(exc)) from exc
    if body.customer.id != link.customer_id:
        raise _invalid("customer.id", "the answer link belongs to another customer")
    if body.survey_id is not None and body.survey_id != link.survey_id:
        raise _invalid("survey_id", "the answer link is for another survey invitation")
    return invitation_sms_survey(link, locale=body.customer.locale)


def _plain_survey(deps: CollectorDeps, body: SmsSurveyRequest, *, scale_name: str) -> SmsSurvey:
    expires = body.expires_at or datetime.now(UTC) + timedelta(hours=deps.settings.sms_survey_ttl_h)
    return SmsSurvey(
        request_id=uuid.uuid4().hex,
        customer_id=body.customer.id,
        survey_id=body.survey_id,
        metric=body.metric.value,
        scale=scale_name,
        locale=body.customer.locale,
        touchpoint=body.touchpoint,
        segment=dict(body.segment),
        account=body.account.model_dump(exclude_none=True) if body.account else None,
        expires_at=expires,
    )


def _invalid(field: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "Invalid request",
        detail=f"{field}: {message}",
        type_="https://csat.dev/problems/validation",
        field=field,
    )


def _not_found(what: str) -> ProblemError:
    return ProblemError(
        404, "Not Found", detail=f"no such {what}", type_="https://csat.dev/problems/not-found"
    )


def _db_down(retry_after_s: int) -> ProblemError:
    return ProblemError(
        503,
        "Service Unavailable",
        detail="the database is unavailable; retry later",
        type_="https://csat.dev/problems/database-unavailable",
        headers={"Retry-After": str(retry_after_s)},
    )
