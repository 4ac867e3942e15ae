"""SMS replies in Twilio's inbound webhook format: signature check, reply parsing, TwiML (pure)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

from services.collector.domain import RatingIn
from services.collector.links import EmailLink, survey_rating_id
from services.collector.ports import SmsSurvey
from shared.scales import Scale, ScaleError, parse_score
from shared.security.hashing import AddressHasher

_PHONE = re.compile(r"^\+[1-9]\d{6,14}$")
_STOP_WORDS = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "arret", "arrêt", "help", "info"}


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's scheme: HMAC-SHA1 over the URL then each parameter name+value, sorted; base64."""
    by_name: dict[str, set[str]] = {}
    for name, value in params:
        by_name.setdefault(name, set()).add(value)
    data = url + "".join(name + value for name in sorted(by_name) for value in sorted(by_name[name]))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port and with the scheme's default port: Twilio signs either."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    without = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    with_port = urlunsplit(
        (parts.scheme, f"{host}:{parts.port or default}", parts.path, parts.query, parts.fragment)
    )
    return list(dict.fromkeys([url, without, with_port]))


def signature_valid(
    *, auth_token: str, url: str, params: Iterable[tuple[str, str]], signature: str | None
) -> bool:
    """Constant-time comparison against each URL form Twilio may have signed."""
    if not signature:
        return False
    items = list(params)
    return any(
        hmac.compare_digest(compute_signature(auth_token, candidate, items).encode(), signature.encode())
        for candidate in _url_variants(url)
    )


def phone_hash(hasher: AddressHasher, phone: str) -> bytes:
    """A keyed hash of an E.164 number (its own key, ``CSAT_ADDRESS_HASH_KEY``): replies can be matched
    without storing the number."""
    return bytes.fromhex(hasher.phone(normalize_phone(phone)))


def phone_hashes(hasher: AddressHasher, phone: str, *, legacy_secret: str) -> list[bytes]:
    """Every hash a stored survey for this number may carry: each address-hash key, then the hash of
    releases that keyed it with the signing secret (surveys sent before the upgrade still match)."""
    number = normalize_phone(phone)
    keyed = [bytes.fromhex(h) for h in hasher.candidates("phone", number)]
    legacy = hmac.new(legacy_secret.encode(), b"phone:" + number.encode(), hashlib.sha256).digest()
    return [*keyed, legacy]


def normalize_phone(phone: str) -> str:
    """E.164 without spaces or punctuation; raises ValueError for anything else."""
    compact = re.sub(r"[\s().-]", "", phone)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if not _PHONE.match(compact):
        raise ValueError("phone must be an E.164 number such as +33612345678")
    return compact


@dataclass(frozen=True, slots=True)
class Reply:
    score: int
    comment: str | None


def is_keyword(body: str) -> bool:
    """Carrier keywords (STOP, HELP...) are handled by Twilio, never read as an answer."""
    return body.strip().lower() in _STOP_WORDS


def parse_reply(scale: Scale, body: str) -> Reply:
    """``"4"`` or ``"4 great service"`` (also ``"4/5"``, ``"4."``, labels such as ``"yes"``) -> a reply."""
    text = body.strip()
    if not text:
        raise ScaleError("Body", "the reply is empty")
    match = re.match(r"^(\d{1,2})(?:\s*/\s*\d{1,2})?[.,!:;)-]*(?:\s+(.*))?$", text, re.DOTALL)
    if match:
        score = parse_score(scale, int(match.group(1)))
        rest = (match.group(2) or "").strip()
        return Reply(score=score, comment=rest[:5000] or None)
    first, _, rest = text.partition(" ")
    for candidate, comment in ((text, ""), (first.rstrip(".,!"), rest)):
        if candidate.strip().lower() in scale.labels:
            return Reply(score=parse_score(scale, candidate), comment=comment.strip()[:5000] or None)
    raise ScaleError("Body", f"the reply does not start with a score from {scale.low} to {scale.high}")


def pick_sms_survey(candidates: Sequence[SmsSurvey], *, now: datetime) -> SmsSurvey | None:
    """The survey a reply answers, among those sent to the number (newest first): the newest one still
    unanswered; else the newest answered invitation still open, so a second reply is a second click
    (its answer is the invitation's rating again: the same answer replays, another one is refused).
    A survey answered outside an invitation takes no second reply."""
    live = [c for c in candidates if c.expires_at > now]
    for c in live:
        if c.answered_at is None:
            return c
    for c in live:
        if c.invitation:
            return c
    return None


def sms_rating_id(survey: SmsSurvey) -> str:
    """An invitation's answer takes the invitation's rating id (the one its email link uses); any other
    survey SMS gets its own."""
    if survey.invitation and survey.survey_id:
        return survey_rating_id(survey.survey_id, survey.customer_id)
    return f"sms-{survey.request_id}"


def invitation_sms_survey(link: EmailLink, *, locale: str | None = None) -> SmsSurvey:
    """The SMS survey of an invitation, from its signed answer link: same survey, customer, scale, segment
    and window. Its request id is derived from the invitation, so registering it again is a no-op."""
    digest = hashlib.sha256(f"sms\x00{link.survey_id}\x00{link.customer_id}".encode()).hexdigest()
    return SmsSurvey(
        request_id=f"inv-{digest[:32]}",
        customer_id=link.customer_id,
        survey_id=link.survey_id,
        metric=link.metric,
        scale=link.scale,
        locale=link.locale or locale,
        touchpoint=link.touchpoint or "sms",
        segment=dict(link.segment),
        expires_at=link.expires_at,
        invitation=True,
        reclick_window_s=link.reclick_window_s,
    )


def survey_answer(survey: SmsSurvey, reply: Reply) -> RatingIn:
    """The rating a reply stands for: the survey's metric, scale and context, the customer's words."""
    return RatingIn.model_validate(
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


def twiml(message: str | None) -> str:
    """A TwiML answer; no message means Twilio sends nothing back."""
    if not message:
        return '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Message>{escape(message)}</Message></Response>'
