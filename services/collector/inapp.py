"""In-app survey invitations: registered from the invitation's signed answer link, offered to the web
widget of the proven customer (pure: no I/O).

The collector keeps the link's token, not the survey: what the widget shows (metric, scale, question,
language, end of the window) is read from the signed link when it asks, and it answers by posting to
that link, so a widget answer is an email-link answer (one rating id per invitation, the re-click window
of the link, 409 after it, 410 once the window closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from services.collector.domain import PROOF_REFUSALS
from services.collector.links import EmailLink
from services.collector.ports import InAppSurvey
from shared.events import KeyKind
from shared.identity.sourcekeys import ProofCheck, verify_customer_proof


def invitation_inapp_survey(link: EmailLink, token: str, *, locale: str | None = None) -> InAppSurvey:
    """The in-app survey of an invitation: its request id is derived from the invitation and customer,
    so registering it again (a retry, a reminder) changes nothing."""
    digest = hashlib.sha256(f"in_app\x00{link.survey_id}\x00{link.customer_id}".encode()).hexdigest()
    return InAppSurvey(
        request_id=f"inapp-{digest[:32]}",
        customer_id=link.customer_id,
        survey_id=link.survey_id,
        token=token,
        expires_at=link.expires_at,
        locale=link.locale or locale,
    )


def offerable(survey: InAppSurvey, *, customer_id: str, now: datetime) -> bool:
    """Whether the widget of ``customer_id`` may be shown this invitation (before asking whether it was
    answered): the customer's own, still open."""
    return survey.customer_id == customer_id and survey.expires_at > now


def proof_refusal(
    *, key_kind: KeyKind, identity_secrets: Sequence[str], customer_id: str, proof: str | None, now: datetime
) -> str | None:
    """Why this caller may not read ``customer_id``'s invitation, or None.

    A publishable key is public (it is in the page): anyone could type another customer id beside it, so
    the customer must be proven by the site's server (``v1.<expiry>.<HMAC>`` with the source's identity
    secret, as for ratings). A secret key or an API token is a server: its customer id is a fact.
    """
    if key_kind in (KeyKind.SECRET, KeyKind.TOKEN):
        return None
    if not proof:
        return "customer.proof is required with a publishable key: the site's server signs the customer id"
    check = verify_customer_proof(
        identity_secrets=list(identity_secrets),
        customer_id=customer_id,
        proof=proof,
        now=int(now.timestamp()),
    )
    return None if check is ProofCheck.VALID else PROOF_REFUSALS[check]


def widget_offer(link: EmailLink, *, answer_url: str, language: str) -> dict[str, Any]:
    """What the widget needs to ask the invitation's question and answer it through its link."""
    return {
        "survey_id": link.survey_id,
        "metric": link.metric,
        "scale": link.scale,
        "question": link.question,
        "locale": language,
        "expires_at": link.expires_at.isoformat(),
        "answer_url": answer_url,
    }
