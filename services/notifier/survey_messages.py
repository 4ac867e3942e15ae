"""The survey invitation as the customer receives it: a multipart email with one-click score buttons, or
one SMS ending in "reply 1-5". Pure: the signed links and the unsubscribe link come in, text comes out.

Each score button opens the collector's signed email link with the score preselected
(``<answer_url>?score=4``); that GET only shows the confirm page (mail scanners open links), its POST
records the answer. The HTML is built for mail clients: inline styles, tables with
``role="presentation"`` for layout, no script, no stylesheet, text buttons (no images to block), and
``mailsafe.check`` enforces it. Customer emails carry RFC 8058 one-click unsubscribe headers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared.gsm7 import SMS_UNITS, to_gsm7, units
from shared.scales import Metric, Scale, get_scale
from shared.vocabulary import LOCALES

_ENV = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates" / "survey"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
    trim_blocks=True,
    lstrip_blocks=True,
)

_MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "fr": [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
}

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "preheader": "One click is enough to answer.",
        "reminder_subject": "Reminder: {question}",
        "reminder_intro": "A few days ago we asked you one question; your answer still helps us.",
        "confirm_hint": "Click a score: the next page shows your answer for you to confirm, with room for a "
        "comment.",
        "follow_up_intro": "If you have a moment, tell us there:",
        "until": "You can answer until {date}.",
        "why": "You are receiving this because of your recent interaction with {brand}. "
        "No more surveys from us?",
        "unsubscribe": "Unsubscribe in one click",
        "scores_intro": "Click the link of your score (the next page asks you to confirm):",
        "unsubscribe_text": "Unsubscribe in one click: {url}",
        "sms_reply": "Reply {low}-{high} ({best} = {best_label}). STOP to opt out",
        "sms_yes_no": "Reply YES or NO. STOP to opt out",
    },
    "fr": {
        "preheader": "Un clic suffit pour répondre.",
        "reminder_subject": "Rappel : {question}",
        "reminder_intro": "Nous vous avons posé une question il y a quelques jours ; votre réponse nous aide "
        "toujours.",
        "confirm_hint": "Cliquez sur une note : la page suivante vous la fait confirmer et vous permet "
        "d'ajouter un commentaire.",
        "follow_up_intro": "Si vous avez un instant, dites-nous :",
        "until": "Vous pouvez répondre jusqu'au {date}.",
        "why": "Vous recevez ce message à la suite de votre échange récent avec {brand}. "
        "Ne plus recevoir d'enquêtes ?",
        "unsubscribe": "Se désabonner en un clic",
        "scores_intro": "Cliquez sur le lien de votre note (la page suivante vous demande de confirmer) :",
        "unsubscribe_text": "Se désabonner en un clic : {url}",
        "sms_reply": "Répondez de {low} à {high} ({best} = {best_label}). STOP pour ne plus recevoir",
        "sms_yes_no": "Répondez OUI ou NON. STOP pour ne plus recevoir",
    },
}

#: (metric, scale) -> per language: the labels of the lowest and highest scores, and the best one's.
_ENDS: dict[tuple[Metric, str], dict[str, tuple[str, str]]] = {
    (Metric.CSAT, "1-5"): {
        "en": ("Very dissatisfied", "Very satisfied"),
        "fr": ("Très insatisfait", "Très satisfait"),
    },
    (Metric.CSAT, "1-10"): {
        "en": ("Very dissatisfied", "Very satisfied"),
        "fr": ("Très insatisfait", "Très satisfait"),
    },
    (Metric.NPS, "0-10"): {
        "en": ("Not at all likely", "Extremely likely"),
        "fr": ("Pas du tout probable", "Très probable"),
    },
    (Metric.CES, "1-7"): {"en": ("Very difficult", "Very easy"), "fr": ("Très difficile", "Très facile")},
    (Metric.CES, "1-5"): {
        "en": ("Very little effort", "A lot of effort"),
        "fr": ("Très peu d'effort", "Beaucoup d'effort"),
    },
}
_WORDS: dict[tuple[Metric, str], dict[str, dict[int, str]]] = {
    (Metric.CSAT, "1-3"): {
        "en": {1: "Unhappy", 2: "Neutral", 3: "Happy"},
        "fr": {1: "Déçu", 2: "Neutre", 3: "Ravi"},
    },
    (Metric.CSAT, "yes-no"): {"en": {1: "Yes", 0: "No"}, "fr": {1: "Oui", 0: "Non"}},
}


def language(locale: str | None) -> str:
    base = (locale or "").split("-")[0].split("_")[0].lower()
    return base if base in TEXT else LOCALES[0]


@dataclass(frozen=True, slots=True)
class Button:
    score: int
    label: str
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class SurveyInvitation:
    """What one invitation email needs; ``answer_url`` is the collector's signed link for the invitation."""

    locale: str
    metric: str
    scale: str
    question: str
    answer_url: str
    unsubscribe_url: str
    expires_at: datetime
    brand: str
    follow_up: str | None = None
    logo_url: str | None = None
    reminder: bool = False
    unsubscribe_mailto: str | None = None


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    text: str
    html: str
    headers: Mapping[str, str]


def with_score(url: str, score: int) -> str:
    """The link with ``score`` set in its query (any other parameter kept)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "score"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("score", str(score))])))


def buttons(scale: Scale, lang: str, answer_url: str) -> list[Button]:
    """One button per score, best last for ascending scales (yes before no for yes/no)."""
    words = _WORDS.get((scale.metric, scale.name), {}).get(lang)
    ends = _ENDS.get((scale.metric, scale.name), {}).get(lang)
    order = sorted(scale.scores(), reverse=scale.name == "yes-no")
    out = []
    for score in order:
        label = words[score] if words else str(score)
        title = label
        if ends and score in (scale.low, scale.high):
            title = f"{score} - {ends[0] if score == scale.low else ends[1]}"
        out.append(Button(score, label, title, with_score(answer_url, score)))
    return out


def unsubscribe_headers(url: str, mailto: str | None) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe: the HTTPS link (POST unsubscribes) and an optional mailto."""
    targets = [f"<{url}>"] + ([f"<{mailto}>"] if mailto else [])
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _date(moment: datetime, lang: str) -> str:
    months = _MONTHS.get(lang, _MONTHS["en"])
    day = moment.day if lang == "en" or moment.day != 1 else "1er"
    return (
        f"{months[moment.month - 1]} {day}, {moment.year}"
        if lang == "en"
        else f"{day} {months[moment.month - 1]} {moment.year}"
    )


def render_survey_email(invitation: SurveyInvitation) -> RenderedEmail:
    """Subject, plain text and HTML in the customer's language, and the unsubscribe headers."""
    lang = language(invitation.locale)
    t = TEXT[lang]
    scale = get_scale(Metric(invitation.metric), invitation.scale)
    score_buttons = buttons(scale, lang, invitation.answer_url)
    ends = _ENDS.get((scale.metric, scale.name), {}).get(lang)
    subject = (
        t["reminder_subject"].format(question=invitation.question)
        if invitation.reminder
        else invitation.question
    )
    until = t["until"].format(date=_date(invitation.expires_at, lang))
    html = _ENV.get_template("invitation.html").render(
        lang=lang,
        t={k: v.format(brand=invitation.brand) if "{brand}" in v else v for k, v in t.items()},
        subject=subject,
        question=invitation.question,
        follow_up=invitation.follow_up,
        buttons=score_buttons,
        button_width=36 if len(score_buttons) > 7 else 44,
        low_label=ends[0] if ends else None,
        high_label=ends[1] if ends else None,
        until=until,
        brand=invitation.brand,
        logo_url=invitation.logo_url,
        reminder=invitation.reminder,
        unsubscribe_url=invitation.unsubscribe_url,
    )
    lines = [t["reminder_intro"], ""] if invitation.reminder else []
    lines += [invitation.question, "", t["scores_intro"]]
    lines += [f"  {b.title}: {b.url}" for b in score_buttons]
    lines += [
        "",
        t["confirm_hint"]
        + (f" {t['follow_up_intro']} {invitation.follow_up}" if invitation.follow_up else ""),
    ]
    lines += [
        until,
        "",
        "-- ",
        t["why"].format(brand=invitation.brand),
        t["unsubscribe_text"].format(url=invitation.unsubscribe_url),
    ]
    return RenderedEmail(
        subject=subject,
        text="\n".join(lines) + "\n",
        html=html,
        headers=unsubscribe_headers(invitation.unsubscribe_url, invitation.unsubscribe_mailto),
    )


def render_survey_sms(*, locale: str, metric: str, scale: str, question: str) -> str:
    """The question and "reply 1-5" in one 7-bit SMS (160 units); the question is shortened if it must be."""
    lang = language(locale)
    t = TEXT[lang]
    s = get_scale(Metric(metric), scale)
    if s.name == "yes-no":
        hint = t["sms_yes_no"]
    else:
        best = s.high if s.higher_is_better else s.low
        ends = _ENDS.get((s.metric, s.name), {}).get(lang)
        label = (ends[1] if s.higher_is_better else ends[0]).lower() if ends else str(best)
        hint = t["sms_reply"].format(low=s.low, high=s.high, best=best, best_label=label)
    hint = to_gsm7(hint)
    text = to_gsm7(" ".join(question.split()))
    budget = SMS_UNITS - (units(hint) or SMS_UNITS) - 1
    while (units(text) or 0) > budget:
        text = text[: max(0, budget - 3)].rstrip() + "..."
    return f"{text} {hint}"
