"""What people see on the public channels: the texts in English and French, the HTML pages, the widget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared.http import PROBLEM_JSON
from shared.scales import Metric, Scale

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
        "updated": "Your answer has been updated.",
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
        "updated": "Votre réponse a bien été modifiée.",
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
        "updated": "Your answer has been updated, thank you!",
        "none": "We have no survey waiting for your answer.",
        "unreadable": "Sorry, please reply with a number from {low} to {high}, "
        "optionally followed by a comment.",
        "down": "Sorry, we could not record your answer. Please send it again in a few minutes.",
    },
    "fr": {
        "thanks": "Merci pour votre réponse !",
        "already": "Nous avons déjà votre réponse, merci !",
        "updated": "Votre réponse a été mise à jour, merci !",
        "none": "Aucune enquête n'attend votre réponse.",
        "unreadable": "Merci de répondre par un chiffre de {low} à {high}, "
        "suivi d'un commentaire si vous le souhaitez.",
        "down": "Votre réponse n'a pas pu être enregistrée. Renvoyez-la dans quelques minutes.",
    },
}

FACES = {1: "\U0001f61e", 2: "\U0001f610", 3: "\U0001f600"}


def lang(locale: str | None) -> str:
    """The language of our texts closest to the customer's locale (French or English)."""
    return "fr" if (locale or "").lower().startswith("fr") else "en"


def choices(scale: Scale, language: str) -> list[tuple[int, str]]:
    """(score, label) per answer of the scale: stars, smileys, yes/no or plain numbers."""
    if scale.metric is Metric.CSAT and scale.name == "1-3":
        return [(s, FACES[s]) for s in scale.scores()]
    if scale.metric is Metric.CSAT and scale.name == "yes-no":
        return [(1, "Oui" if language == "fr" else "Yes"), (0, "Non" if language == "fr" else "No")]
    if scale.metric is Metric.CSAT and scale.name == "1-5":
        return [(s, "\u2605" * s) for s in scale.scores()]
    return [(s, str(s)) for s in scale.scores()]


def wants_html(request: Request) -> bool:
    """A person's browser gets pages; an API client asking for JSON gets problem+json."""
    accept = request.headers.get("accept", "")
    return not ("application/json" in accept or PROBLEM_JSON in accept) or "text/html" in accept


def page(name: str, status: int, **context: Any) -> HTMLResponse:
    html = _TEMPLATES.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def demo_page(*, key: str, customer: str, proof: str, base_url: str) -> HTMLResponse:
    html = _TEMPLATES.get_template("demo.html").render(
        key=key, customer=customer, proof=proof, base_url=base_url
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@dataclass(frozen=True, slots=True)
class SurveyPages:
    """The pages of one email survey, in the customer's language."""

    language: str
    question: str | None
    scale: Scale

    @property
    def text(self) -> dict[str, str]:
        return TEXT[self.language]

    def form(
        self, status: int, *, selected: int | None, comment: str | None, error: str | None
    ) -> HTMLResponse:
        """The confirm form: the scale with ``selected`` preselected, the comment box, the button."""
        question = self.question or self.text["question"]
        return page(
            "confirm.html",
            status,
            lang=self.language,
            t=self.text,
            title=question,
            question=question,
            choices=choices(self.scale, self.language),
            selected=selected,
            comment=comment,
            error=error,
        )

    def message(self, status: int, title: str, message: str) -> HTMLResponse:
        """A page with one message; ``title`` and ``message`` are keys of ``TEXT``."""
        return page(
            "message.html", status, lang=self.language, title=self.text[title], message=self.text[message]
        )
