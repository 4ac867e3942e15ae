"""Public channels: the web widget and its demo page, one-click email links, Twilio SMS replies."""

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError

from services.collector import metrics
from services.collector.access import ProblemError
from services.collector.domain import RatingIn, RatingRejected, fingerprint, normalize
from services.collector.ingest import Outcome, Submission
from services.collector.links import EmailLink, LinkExpired, LinkInvalid, LinkSigner
from services.collector.ports import BrokerUnavailable, StoreUnavailable
from services.collector.sms import is_keyword, parse_reply, phone_hash, signature_valid, twiml
from shared.http import PROBLEM_JSON, problem
from shared.scales import Metric, Scale, ScaleError, get_scale, parse_score

if TYPE_CHECKING:
    from services.collector.app import Collector

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
WIDGET_JS = (HERE / "static" / "widget.js").read_bytes()
_TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
)

#: Pages that carry a token: no caching, no referrer, nothing loaded from elsewhere.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "question": "How satisfied are you?",
        "comment": "Anything to add? (optional)",
        "confirm": "Send my answer",
        "only_post": "Your answer is recorded only when you press the button.",
        "thanks_title": "Thank you!",
        "thanks": "Your answer has been recorded.",
        "already_title": "Already answered",
        "already": "An answer to this survey was already recorded. Thank you!",
        "busy": "Your answer is being recorded; please reload this page in a moment.",
        "invalid_title": "This link is not valid",
        "invalid": "The link may have been altered or cut. Please use the link from your email as is.",
        "expired_title": "This link has expired",
        "expired": "This survey is closed. Thank you for your interest.",
        "pick": "Please choose a score.",
        "down_title": "Please try again in a minute",
        "down": "We could not record your answer right now. Nothing was recorded; please try again shortly.",
        "too_many": "Too many attempts; please wait a moment.",
    },
    "fr": {
        "question": "Êtes-vous satisfait ?",
        "comment": "Un commentaire ? (facultatif)",
        "confirm": "Envoyer ma réponse",
        "only_post": "Votre réponse n'est enregistrée que lorsque vous appuyez sur le bouton.",
        "thanks_title": "Merci !",
        "thanks": "Votre réponse a bien été enregistrée.",
        "already_title": "Déjà répondu",
        "already": "Une réponse à cette enquête a déjà été enregistrée. Merci !",
        "busy": "Votre réponse est en cours d'enregistrement ; rechargez cette page dans un instant.",
        "invalid_title": "Ce lien n'est pas valide",
        "invalid": "Le lien a peut-être été modifié ou coupé. Utilisez le lien de l'e-mail tel quel.",
        "expired_title": "Ce lien a expiré",
        "expired": "Cette enquête est close. Merci de votre intérêt.",
        "pick": "Choisissez une note.",
        "down_title": "Réessayez dans une minute",
        "down": "Votre réponse n'a pas pu être enregistrée pour le moment. Réessayez un peu plus tard.",
        "too_many": "Trop de tentatives ; patientez un instant.",
    },
}

SMS_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "thanks": "Thank you for your answer!",
        "already": "We already have your answer, thank you!",
        "none": "We have no survey waiting for your answer.",
        "unreadable": "Sorry, please reply with a number from {low} to {high}, "
        "optionally followed by a comment.",
        "down": "Sorry, we could not record your answer. Please send it again in a few minutes.",
    },
    "fr": {
        "thanks": "Merci pour votre réponse !",
        "already": "Nous avons déjà votre réponse, merci !",
        "none": "Aucune enquête n'attend votre réponse.",
        "unreadable": "Merci de répondre par un chiffre de {low} à {high}, "
        "suivi d'un commentaire si vous le souhaitez.",
        "down": "Votre réponse n'a pas pu être enregistrée. Renvoyez-la dans quelques minutes.",
    },
}

FACES = {1: "\U0001f61e", 2: "\U0001f610", 3: "\U0001f600"}


def _lang(locale: str | None) -> str:
    return "fr" if (locale or "").lower().startswith("fr") else "en"


def _choices(scale: Scale, lang: str) -> list[tuple[int, str]]:
    if scale.metric is Metric.CSAT and scale.name == "1-3":
        return [(s, FACES[s]) for s in scale.scores()]
    if scale.metric is Metric.CSAT and scale.name == "yes-no":
        return [(1, "Oui" if lang == "fr" else "Yes"), (0, "Non" if lang == "fr" else "No")]
    if scale.metric is Metric.CSAT and scale.name == "1-5":
        return [(s, "\u2605" * s) for s in scale.scores()]
    return [(s, str(s)) for s in scale.scores()]


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return not ("application/json" in accept or PROBLEM_JSON in accept) or "text/html" in accept


def _page(name: str, status: int, **context: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def channels_router(ctx: "Collector") -> APIRouter:
    """Widget, demo page, email links and the Twilio webhook, all ending in the same ingestor."""
    cfg = ctx.settings
    signer = LinkSigner(
        secret=cfg.signing_secret.get_secret_value(),
        previous=[s.get_secret_value() for s in cfg.signing_secret_previous],
    )
    router = APIRouter()

    @router.get(
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

    @router.get(
        "/demo",
        tags=["widget"],
        summary="A page showing the widget with the demo source's key (dev only)",
        response_class=HTMLResponse,
        responses={404: {"description": "No demo key configured (always so in prod)"}},
    )
    async def demo(request: Request) -> Response:
        if cfg.demo_widget_key is None:
            raise ProblemError(
                404, "Not Found", detail="the demo page is off", type_="https://csat.dev/problems/not-found"
            )
        html = _TEMPLATES.get_template("demo.html").render(
            key=cfg.demo_widget_key.get_secret_value(),
            customer="cus_demo",
            base_url=str(request.base_url).rstrip("/"),
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    # ---- email links ---------------------------------------------------------------------------

    def link_refusal(request: Request, exc: LinkInvalid | LinkExpired) -> Response:
        expired = isinstance(exc, LinkExpired)
        metrics.reject("link_expired" if expired else "link_invalid", "email")
        status = 410 if expired else 403
        if not _wants_html(request):
            return problem(
                status,
                "Gone" if expired else "Forbidden",
                detail=str(exc),
                type_=f"https://csat.dev/problems/{'link-expired' if expired else 'link-invalid'}",
                errors=[{"field": "token", "message": str(exc)}],
            )
        t = TEXT["en"]
        key = "expired" if expired else "invalid"
        return _page("message.html", status, lang="en", title=t[f"{key}_title"], message=t[key])

    def html_limit(request: Request, t: dict[str, str], lang: str) -> Response | None:
        try:
            ctx.limit_ip(request.scope, source="email")
        except ProblemError as exc:
            if not _wants_html(request):
                raise
            resp = _page("message.html", 429, lang=lang, title=t["too_many"], message=t["too_many"])
            resp.headers.update(exc.headers or {})
            return resp
        return None

    link_responses: dict[int | str, dict[str, Any]] = {
        403: {
            "description": "Tampered or foreign token",
            "content": {"text/html": {}, "application/problem+json": {}},
        },
        410: {"description": "Expired token", "content": {"text/html": {}, "application/problem+json": {}}},
        429: {"description": "Too many requests from this address", "content": {"text/html": {}}},
    }

    @router.get(
        "/v1/email/{token}",
        tags=["email"],
        summary="Confirm page for a one-click email rating (records nothing)",
        description="Mail scanners open links before people do, so the GET only shows the page with "
        "the score preselected and an optional comment; the form's POST records the rating.",
        response_class=HTMLResponse,
        responses={
            **link_responses,
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
        try:
            link = signer.verify(token, now=datetime.now(UTC))
        except (LinkInvalid, LinkExpired) as exc:
            return link_refusal(request, exc)
        lang = _lang(link.locale)
        t = TEXT[lang]
        limited = html_limit(request, t, lang)
        if limited is not None:
            return limited
        scale = get_scale(Metric(link.metric), link.scale)
        selected: int | None = None
        if score is not None:
            try:
                selected = parse_score(scale, score)
            except ScaleError:
                selected = None
        return _page(
            "confirm.html",
            200,
            lang=lang,
            t=t,
            title=link.question or t["question"],
            question=link.question or t["question"],
            choices=_choices(scale, lang),
            selected=selected,
            comment=None,
            error=None,
        )

    @router.post(
        "/v1/email/{token}",
        tags=["email"],
        summary="Record the rating from an email link's confirm page",
        description="Once per (survey, customer): submitting again with the same answer shows the "
        "thank-you page again; a different answer is refused with 409 (already answered).",
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
            **link_responses,
            200: {"content": {"text/html": {"example": "<h1>Thank you!</h1>"}}},
            409: {
                "description": "This survey was already answered differently",
                "content": {"text/html": {}},
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
        try:
            link = signer.verify(token, now=datetime.now(UTC))
        except (LinkInvalid, LinkExpired) as exc:
            return link_refusal(request, exc)
        lang = _lang(link.locale)
        t = TEXT[lang]
        limited = html_limit(request, t, lang)
        if limited is not None:
            return limited
        scale = get_scale(Metric(link.metric), link.scale)

        def again(status: int, error: str, selected: int | None = None) -> Response:
            return _page(
                "confirm.html",
                status,
                lang=lang,
                t=t,
                title=link.question or t["question"],
                question=link.question or t["question"],
                choices=_choices(scale, lang),
                selected=selected,
                comment=comment,
                error=error,
            )

        if score is None or not score.strip():
            metrics.reject("invalid_score", "email")
            return again(422, t["pick"])
        try:
            rating_in = _link_rating(link, score, comment)
            rating = normalize(
                rating_in, received_at=datetime.now(UTC), rating_id=link.rating_id, source="email"
            )
        except (ValidationError, RatingRejected):
            metrics.reject("invalid_score", "email")
            return again(422, t["pick"])
        sub = Submission(
            rating=rating, source_id="email", fingerprint=fingerprint(rating, client_occurred_at=None)
        )
        try:
            outcome = (await ctx.ingestor.submit([sub]))[0]
        except (BrokerUnavailable, StoreUnavailable) as exc:
            what = "broker" if isinstance(exc, BrokerUnavailable) else "database"
            metrics.reject(f"{what}_unavailable", "email")
            resp = _page("message.html", 503, lang=lang, title=t["down_title"], message=t["down"])
            resp.headers["Retry-After"] = str(cfg.retry_after_s)
            return resp
        if outcome is Outcome.ACCEPTED:
            metrics.ACCEPTED.labels(rating.metric.value, "email").inc()
        if outcome in (Outcome.ACCEPTED, Outcome.REPLAYED):
            return _page("message.html", 200, lang=lang, title=t["thanks_title"], message=t["thanks"])
        metrics.reject("idempotency_conflict" if outcome is Outcome.CONFLICT else "in_progress", "email")
        message = t["already"] if outcome is Outcome.CONFLICT else t["busy"]
        return _page("message.html", 409, lang=lang, title=t["already_title"], message=message)

    # ---- SMS (Twilio inbound webhook) ------------------------------------------------------------

    def twiml_response(message: str | None, status: int = 200) -> Response:
        return Response(twiml(message), status_code=status, media_type="text/xml")

    @router.post(
        "/v1/sms/twilio",
        tags=["sms"],
        summary="Twilio inbound SMS webhook: a reply such as '4' or '4 great service' becomes a rating",
        description="Form-encoded as Twilio sends it (From, To, Body, MessageSid, ...), signed with "
        "X-Twilio-Signature (HMAC-SHA1 of the URL and sorted parameters with the auth token). The "
        "sender is matched to the newest open survey created with POST /v1/sms-surveys. Answered with "
        "TwiML.",
        response_class=Response,
        responses={
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
        },
        openapi_extra={
            "requestBody": {
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
        },
    )
    async def sms_webhook(request: Request) -> Response:
        token = cfg.twilio_auth_token
        if token is None:
            raise ProblemError(
                404,
                "Not Found",
                detail="the SMS webhook is not configured",
                type_="https://csat.dev/problems/not-found",
            )
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
        fields = dict(params)
        sender, body = fields.get("From", ""), fields.get("Body", "")
        if is_keyword(body):
            return twiml_response(None)
        now = datetime.now(UTC)
        try:
            survey = await ctx.store.open_sms_survey(
                phone_hash=phone_hash(cfg.signing_secret.get_secret_value(), sender), now=now
            )
        except ValueError:
            survey = None
        except StoreUnavailable:
            metrics.reject("database_unavailable", "sms")
            return twiml_response(SMS_TEXT["en"]["down"])
        if survey is None:
            metrics.reject("sms_no_survey", "sms")
            return twiml_response(SMS_TEXT["en"]["none"])
        texts = SMS_TEXT[_lang(survey.locale)]
        scale = get_scale(Metric(survey.metric), survey.scale)
        try:
            reply = parse_reply(scale, body)
        except ScaleError:
            metrics.reject("sms_unreadable", "sms")
            return twiml_response(texts["unreadable"].format(low=scale.low, high=scale.high))
        rating_id = f"sms-{survey.request_id}"
        rating_in = RatingIn.model_validate(
            {
                "metric": survey.metric,
                "scale": survey.scale,
                "score": reply.score,
                "customer": {"id": survey.customer_id, "locale": survey.locale},
                "segment": survey.segment,
                "touchpoint": survey.touchpoint or "sms",
                "comment": reply.comment,
                "account": survey.account,
                "survey_id": survey.survey_id,
            }
        )
        rating = normalize(rating_in, received_at=now, rating_id=rating_id, source="sms")
        sub = Submission(
            rating=rating, source_id="sms", fingerprint=fingerprint(rating, client_occurred_at=None)
        )
        try:
            outcome = (await ctx.ingestor.submit([sub]))[0]
        except (BrokerUnavailable, StoreUnavailable) as exc:
            what = "broker" if isinstance(exc, BrokerUnavailable) else "database"
            metrics.reject(f"{what}_unavailable", "sms")
            return twiml_response(texts["down"])
        if outcome in (Outcome.ACCEPTED, Outcome.REPLAYED):
            if outcome is Outcome.ACCEPTED:
                metrics.ACCEPTED.labels(rating.metric.value, "sms").inc()
            try:
                await ctx.store.mark_sms_answered(request_id=survey.request_id, rating_id=rating_id, at=now)
            except StoreUnavailable:
                log.warning("sms_mark_answered_failed")
            return twiml_response(texts["thanks"])
        metrics.reject("idempotency_conflict" if outcome is Outcome.CONFLICT else "in_progress", "sms")
        return twiml_response(texts["already"])

    return router


def _link_rating(link: EmailLink, score: str, comment: str | None) -> RatingIn:
    """The rating an email link stands for, with the score and comment the person confirmed."""
    return RatingIn.model_validate(
        {
            "metric": link.metric,
            "scale": link.scale,
            "score": score.strip(),
            "customer": {"id": link.customer_id, "locale": link.locale},
            "segment": link.segment,
            "touchpoint": link.touchpoint or "email",
            "comment": (comment or "").strip() or None,
            "survey_id": link.survey_id,
        }
    )
