"""RFC 8058 one-click unsubscribe: GET shows a confirmation page, only POST unsubscribes.

Mail scanners (Safe Links and the like) fetch every link in a message, so a GET must change nothing.
Mail clients that support RFC 8058 POST ``List-Unsubscribe=One-Click`` to the same URL without
cookies; our confirmation page posts the same form. The signed token says who and which address
(as a hash); the POST adds both to the suppression list, which every channel honours.
"""

from __future__ import annotations

from html import escape

import structlog
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.notifier.deps import NotifierDeps
from services.notifier.ports import SuppressionEntry
from services.notifier.tokens import BadToken

log = structlog.get_logger(__name__)

_TEXT = {
    "en": {
        "title": "Unsubscribe",
        "ask": "Do you want to stop receiving feedback follow-ups from us?",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done": "You will not receive further follow-up messages from us. Service messages you asked for "
        "(such as a call-back you requested) are not affected.",
        "bad_title": "This link is not valid",
        "bad": "The unsubscribe link is incomplete or was altered. Please use the link from the message.",
    },
    "fr": {
        "title": "Se désabonner",
        "ask": "Souhaitez-vous ne plus recevoir nos messages de suivi ?",
        "button": "Me désabonner",
        "done_title": "Vous êtes désabonné",
        "done": "Vous ne recevrez plus nos messages de suivi. Les messages de service que vous avez "
        "demandés (un rappel, par exemple) ne sont pas concernés.",
        "bad_title": "Ce lien n'est pas valide",
        "bad": "Le lien de désabonnement est incomplet ou a été modifié. "
        "Merci d'utiliser le lien du message.",
    },
}

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}


def _page(status: int, locale: str, title: str, text: str, form_action: str | None = None) -> HTMLResponse:
    t = _TEXT.get(locale, _TEXT["en"])
    form = ""
    if form_action is not None:
        form = (
            f'<form method="post" action="{escape(form_action)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            f'<button type="submit">{escape(t["button"])}</button></form>'
        )
    html = (
        f'<!doctype html><html lang="{escape(locale)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>"
        '<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto">'
        f"<h1>{escape(title)}</h1><p>{escape(text)}</p>{form}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def router(deps: NotifierDeps) -> APIRouter:
    routes = APIRouter(tags=["unsubscribe"])
    tokens = deps.tokens

    def invalid() -> HTMLResponse:
        t = _TEXT["en"]
        return _page(400, "en", t["bad_title"], t["bad"])

    @routes.get(
        "/u/{token}",
        response_class=HTMLResponse,
        summary="Unsubscribe confirmation page; a GET never unsubscribes (mail scanners fetch links)",
    )
    async def confirm(token: str) -> HTMLResponse:
        try:
            claim = tokens.read(token)
        except BadToken:
            return invalid()
        t = _TEXT.get(claim.locale, _TEXT["en"])
        return _page(200, claim.locale, t["title"], t["ask"], form_action=f"/u/{token}")

    @routes.post(
        "/u/{token}",
        response_class=HTMLResponse,
        summary="RFC 8058 one-click unsubscribe (body List-Unsubscribe=One-Click); idempotent",
    )
    async def unsubscribe(token: str) -> HTMLResponse:
        try:
            claim = tokens.read(token)
        except BadToken:
            return invalid()
        entries = [SuppressionEntry(claim.scope, claim.address_key)]
        if claim.customer_id:
            entries.append(SuppressionEntry("customer", claim.customer_id))
        added = await deps.suppressions.add_suppressions(
            entries=entries,
            reason="unsubscribed",
            source="list_unsubscribe",
            customer_id=claim.customer_id,
            notification_id=claim.notification_id or None,
        )
        log.info("unsubscribed", scope=claim.scope, notification_id=claim.notification_id, added=added)
        t = _TEXT.get(claim.locale, _TEXT["en"])
        return _page(200, claim.locale, t["done_title"], t["done"])

    return routes
