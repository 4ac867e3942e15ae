"""Public channels, for people: the web widget and its demo page, one-click email links, SMS replies."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import SecretStr, ValidationError

from services.collector import metrics
from services.collector.deps import CollectorDeps
from services.collector.domain import RatingRejected, Trust
from services.collector.intake import IntakeUnavailable, Outcome
from services.collector.links import EmailLink, LinkExpired, LinkInvalid
from services.collector.pages import SMS_TEXT, TEXT, WIDGET_JS, SurveyPages, demo_page, lang, page, wants_html
from services.collector.ports import StoreUnavailable
from services.collector.problems import ProblemError
from services.collector.settings import CollectorSettings
from services.collector.sms import (
    is_keyword,
    parse_reply,
    phone_hashes,
    signature_valid,
    sms_rating_id,
    survey_answer,
    twiml,
)
from shared.events import KeyKind
from shared.http import problem
from shared.identity.sourcekeys import derive_identity_secret, sign_customer
from shared.scales import Metric, ScaleError, get_scale, parse_score

log = structlog.get_logger(__name__)

LINK_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "Tampered or foreign token",
        "content": {"text/html": {}, "application/problem+json": {}},
    },
    410: {"description": "Expired token", "content": {"text/html": {}, "application/problem+json": {}}},
    429: {"description": "Too many requests from this address", "content": {"text/html": {}}},
}

SMS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            "text/xml": {
                "example": '<?xml version="1.0" encoding="UTF-8"?><Response><Message>Thank you for '
                "your answer!</Message></Response>"
            }
        }
    },
    403: {
        "description": "Missing or wrong X-Twilio-Signature",
        "content": {"application/problem+json": {}},
    },
    404: {
        "description": "SMS webhook not configured (no CSAT_TWILIO_AUTH_TOKEN)",
        "content": {"application/problem+json": {}},
    },
}

#: Twilio posts a form, read by hand (the signature covers every parameter), so it is declared here.
SMS_REQUEST_BODY: dict[str, Any] = {
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {
                    "From": {"type": "string"},
                    "To": {"type": "string"},
                    "Body": {"type": "string"},
                    "MessageSid": {"type": "string"},
                    "AccountSid": {"type": "string"},
                },
                "required": ["From", "Body"],
            },
            "example": {
                "MessageSid": "SM0123456789abcdef0123456789abcdef",
                "AccountSid": "AC0123456789abcdef0123456789abcdef",
                "From": "+33612345678",
                "To": "+33700000000",
                "Body": "4 great service",
            },
        }
    },
    "required": True,
}


def router(deps: CollectorDeps) -> APIRouter:
    """Widget, demo page, email links and the Twilio webhook, all ending in the same intake."""
    routes = APIRouter()
    _widget_routes(routes, deps)
    _email_routes(routes, deps)
    _sms_routes(routes, deps)
    return routes


def _widget_routes(routes: APIRouter, deps: CollectorDeps) -> None:
    @routes.get(
        "/widget.js",
        tags=["widget"],
        summary="The embeddable <csat-rating> web component (no framework)",
        response_class=Response,
        responses={200: {"content": {"application/javascript": {"example": "(function () { ... })();"}}}},
    )
    async def widget_js() -> Response:
        return Response(
            WIDGET_JS,
            media_type="application/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    @routes.get(
        "/demo",
        tags=["widget"],
        summary="A page showing the widget with the demo source's key (dev only)",
        response_class=HTMLResponse,
        responses={404: {"description": "No demo key configured (always so in prod)"}},
    )
    async def demo(request: Request) -> Response:
        key = deps.settings.demo_widget_key
        if key is None:
            raise ProblemError(
                404, "Not Found", detail="the demo page is off", type_="https://csat.dev/problems/not-found"
            )
        base_url = str(request.base_url).rstrip("/")
        return demo_page(
            key=key.get_secret_value(),
            customer=DEMO_CUSTOMER,
            proof=await _demo_proof(deps),
            base_url=base_url,
        )


def _email_routes(routes: APIRouter, deps: CollectorDeps) -> None:
    @routes.get(
        "/v1/email/{token}",
        tags=["email"],
        summary="Confirm page for a one-click email rating (records nothing)",
        description="Mail scanners open links before people do, so the GET only shows the page with "
        "the score preselected and an optional comment; the form's POST records the rating.",
        response_class=HTMLResponse,
        responses={
            **LINK_RESPONSES,
            200: {"content": {"text/html": {"example": "<form method=post>...</form>"}}},
        },
    )
    async def email_confirm(
        request: Request,
        token: str,
        score: Annotated[
            str | None, Query(description="The score the clicked link carries", examples=["4"])
        ] = None,
    ) -> Response:
        opened = _open_link(deps, request, token)
        if isinstance(opened, Response):
            return opened
        pages = opened.pages
        return pages.form(200, selected=_preselected(pages, score), comment=None, error=None)

    @routes.post(
        "/v1/email/{token}",
        tags=["email"],
        summary="Record the rating from an email link's confirm page",
        description="Once per (survey, customer): submitting again with the same answer shows the "
        "thank-you page again; a different answer within the survey's re-click window (the link's, "
        "else CSAT_RECLICK_WINDOW_S, 15 minutes) replaces the first; after it, 409 (already answered).",
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/x-www-form-urlencoded": {
                        "example": {"score": "4", "comment": "Fast delivery"}
                    }
                }
            }
        },
        response_class=HTMLResponse,
        responses={
            **LINK_RESPONSES,
            200: {"content": {"text/html": {"example": "<h1>Thank you!</h1>"}}},
            409: {
                "description": "This survey was already answered differently, and the re-click "
                "window is over (or the answer is being recorded)",
                "content": {"text/html": {}, "application/problem+json": {}},
            },
            422: {"description": "No or invalid score", "content": {"text/html": {}}},
            503: {
                "description": "Broker or database unavailable; nothing recorded",
                "content": {"text/html": {}},
            },
        },
    )
    async def email_record(
        request: Request,
        token: str,
        score: Annotated[str | None, Form(examples=["4"])] = None,
        comment: Annotated[str | None, Form(max_length=5000)] = None,
    ) -> Response:
        opened = _open_link(deps, request, token)
        if isinstance(opened, Response):
            return opened
        return await _record_email_answer(
            deps, request, opened.link, opened.pages, score=score, comment=comment
        )


def _sms_routes(routes: APIRouter, deps: CollectorDeps) -> None:
    @routes.post(
        "/v1/sms/twilio",
        tags=["sms"],
        summary="Twilio inbound SMS webhook: a reply such as '4' or '4 great service' becomes a rating",
        description="Form-encoded as Twilio sends it (From, To, Body, MessageSid, ...), signed with "
        "X-Twilio-Signature (HMAC-SHA1 of the URL and sorted parameters with the auth token). The "
        "sender is matched to the newest open survey created with POST /v1/sms-surveys. Answered with "
        "TwiML.",
        response_class=Response,
        responses=SMS_RESPONSES,
        openapi_extra={"requestBody": SMS_REQUEST_BODY},
    )
    async def sms_webhook(request: Request) -> Response:
        token = deps.settings.twilio_auth_token
        if token is None:
            raise ProblemError(
                404,
                "Not Found",
                detail="the SMS webhook is not configured",
                type_="https://csat.dev/problems/not-found",
            )
        fields = await _signed_form(request, deps.settings, token)
        message = await _answer_sms(deps, sender=fields.get("From", ""), body=fields.get("Body", ""))
        return Response(twiml(message), media_type="text/xml")


#: The customer the demo page rates as; the page vouches for it as a site's server would.
DEMO_CUSTOMER = "cus_demo"


async def _demo_proof(deps: CollectorDeps) -> str:
    """The proof a site's server would print beside the customer id (valid one day)."""
    try:
        found = await deps.sources.get_source(source_id="demo")
    except StoreUnavailable:
        found = None
    version = found.identity_version if found is not None else 1
    secret = derive_identity_secret(
        platform_key=deps.settings.identity_platform_key, source_id="demo", version=version
    )
    expires = int(datetime.now(UTC).timestamp()) + 86_400
    return sign_customer(identity_secret=secret, customer_id=DEMO_CUSTOMER, expires_at=expires)


# ---- email links ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Opened:
    link: EmailLink
    pages: SurveyPages


def _open_link(deps: CollectorDeps, request: Request, token: str) -> _Opened | Response:
    """The link behind a genuine, unexpired token and its pages; else the answer refusing it."""
    try:
        link = deps.signer.verify(token, now=datetime.now(UTC))
    except (LinkInvalid, LinkExpired) as exc:
        return _link_refusal(request, exc)
    pages = SurveyPages(
        language=lang(link.locale), question=link.question, scale=get_scale(Metric(link.metric), link.scale)
    )
    try:
        deps.limits.check_ip(request.scope, source="email")
    except ProblemError as exc:
        if not wants_html(request):
            raise
        limited = pages.message(429, "too_many", "too_many")
        limited.headers.update(exc.headers or {})
        return limited
    return _Opened(link=link, pages=pages)


def _link_refusal(request: Request, exc: LinkInvalid | LinkExpired) -> Response:
    """410 for an expired link, 403 for a tampered one: a page for people, problem+json for APIs."""
    expired = isinstance(exc, LinkExpired)
    metrics.reject("link_expired" if expired else "link_invalid", "email")
    status = 410 if expired else 403
    if not wants_html(request):
        return problem(
            status,
            "Gone" if expired else "Forbidden",
            detail=str(exc),
            type_=f"https://csat.dev/problems/{'link-expired' if expired else 'link-invalid'}",
            errors=[{"field": "token", "message": str(exc)}],
        )
    key = "expired" if expired else "invalid"
    return page("message.html", status, lang="en", title=TEXT["en"][f"{key}_title"], message=TEXT["en"][key])


def _preselected(pages: SurveyPages, score: str | None) -> int | None:
    """The score the clicked link carries, when it is one of the scale's."""
    if score is None:
        return None
    try:
        return parse_score(pages.scale, score)
    except ScaleError:
        return None


async def _record_email_answer(
    deps: CollectorDeps,
    request: Request,
    link: EmailLink,
    pages: SurveyPages,
    *,
    score: str | None,
    comment: str | None,
) -> Response:
    """The confirm form's POST: one rating per (survey, customer), answered with a page.

    A second, different answer within the re-click window replaces the first (the same rating id,
    the next revision); after it, 409 (a page, or problem+json in the link's language for an API client).
    """
    if score is None or not score.strip():
        metrics.reject("invalid_score", "email")
        return pages.form(422, selected=None, comment=comment, error=pages.text["pick"])
    now = datetime.now(UTC)
    try:
        submission = deps.intake.prepare(
            link.answer(score, comment),
            received_at=now,
            source="email",
            rating_id=link.rating_id,
            keyed=True,
            trust=Trust(key_kind=KeyKind.EMAIL_LINK),
        )
    except (ValidationError, RatingRejected):
        metrics.reject("invalid_score", "email")
        return pages.form(422, selected=None, comment=comment, error=pages.text["pick"])
    seconds = link.reclick_window_s
    window = timedelta(seconds=deps.settings.reclick_window_s if seconds is None else seconds)
    try:
        verdict = await deps.intake.answer_link(submission, window=window, now=now)
    except IntakeUnavailable:
        down = pages.message(503, "down_title", "down")
        down.headers["Retry-After"] = str(deps.settings.retry_after_s)
        return down
    if verdict.recorded:
        return pages.message(200, "thanks_title", "updated" if verdict.revision else "thanks")
    key = "already" if verdict.outcome is Outcome.CONFLICT else "busy"
    if not wants_html(request):
        refused = problem(
            409,
            pages.text["already_title"],
            detail=pages.text[key],
            type_="https://csat.dev/problems/already-answered"
            if verdict.outcome is Outcome.CONFLICT
            else "https://csat.dev/problems/in-progress",
            errors=[{"field": "score", "message": pages.text[key]}],
        )
        refused.headers["Content-Language"] = pages.language
        return refused
    return pages.message(409, "already_title", key)


# ---- SMS (Twilio inbound webhook) ----------------------------------------------------------------


async def _signed_form(request: Request, cfg: CollectorSettings, token: SecretStr) -> dict[str, str]:
    """The webhook's form fields, once X-Twilio-Signature proves Twilio sent them (else 403)."""
    form = await request.form()
    params = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
    url = str(request.url)
    if cfg.public_url:
        # Behind a proxy, Twilio signed the public URL, not the one this process sees.
        url = cfg.public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not signature_valid(
        auth_token=token.get_secret_value(),
        url=url,
        params=params,
        signature=request.headers.get("x-twilio-signature"),
    ):
        metrics.reject("sms_signature", "sms")
        log.warning("sms_signature_invalid")
        raise ProblemError(
            403,
            "Forbidden",
            detail="missing or invalid X-Twilio-Signature",
            type_="https://csat.dev/problems/signature-invalid",
            field="X-Twilio-Signature",
        )
    return dict(params)


async def _answer_sms(deps: CollectorDeps, *, sender: str, body: str) -> str | None:
    """The reply's rating for the sender's open survey; returns the text to send back (None: nothing)."""
    if is_keyword(body):
        return None
    now = datetime.now(UTC)
    try:
        hashes = phone_hashes(
            deps.phone_hasher, sender, legacy_secret=deps.settings.signing_secret.get_secret_value()
        )
        survey = await deps.surveys.open_sms_survey(phone_hashes=hashes, now=now)
    except ValueError:
        survey = None
    except StoreUnavailable:
        metrics.reject("database_unavailable", "sms")
        return SMS_TEXT["en"]["down"]
    if survey is None:
        metrics.reject("sms_no_survey", "sms")
        return SMS_TEXT["en"]["none"]
    texts = SMS_TEXT[lang(survey.locale)]
    scale = get_scale(Metric(survey.metric), survey.scale)
    try:
        reply = parse_reply(scale, body)
    except ScaleError:
        metrics.reject("sms_unreadable", "sms")
        return texts["unreadable"].format(low=scale.low, high=scale.high)
    submission = deps.intake.prepare(
        survey_answer(survey, reply),
        received_at=now,
        source="sms",
        rating_id=sms_rating_id(survey),
        keyed=True,
        trust=Trust(key_kind=KeyKind.SMS),
    )
    try:
        if survey.invitation:
            # An invitation's reply is a click on its link: a second one may replace the first.
            seconds = survey.reclick_window_s
            window = timedelta(seconds=deps.settings.reclick_window_s if seconds is None else seconds)
            verdict = await deps.intake.answer_link(submission, window=window, now=now)
        else:
            (verdict,) = await deps.intake.submit([submission])
    except IntakeUnavailable:
        return texts["down"]
    if not verdict.recorded:
        return texts["already"]
    if verdict.revision:
        return texts["updated"]
    try:
        await deps.surveys.mark_sms_answered(
            request_id=survey.request_id, rating_id=verdict.rating_id, at=now
        )
    except StoreUnavailable:
        log.warning("sms_mark_answered_failed")
    return texts["thanks"]
