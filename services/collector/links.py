"""One-click email rating links: a signed, expiring token per (survey, customer); pure, no I/O.

The token is signed (HMAC-SHA256 via itsdangerous), not encrypted, so it carries no personal data:
the customer id and the survey's parameters only. The score travels beside it in the link.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from services.collector.domain import RatingIn
from shared.emaillinks import SALT as _SALT
from shared.emaillinks import serializer


class LinkInvalid(ValueError):
    """The token was altered, signed with an unknown secret, or is not a token at all."""


class LinkExpired(ValueError):
    """A genuine token whose validity has run out."""


def survey_rating_id(survey_id: str, customer_id: str) -> str:
    """The one rating id of a (survey, customer): an invitation's email link and its SMS reply share it."""
    digest = hashlib.sha256(f"{survey_id}\x00{customer_id}".encode()).hexdigest()
    return f"email-{digest[:32]}"


@dataclass(frozen=True, slots=True)
class EmailLink:
    survey_id: str
    customer_id: str
    metric: str
    scale: str
    expires_at: datetime
    locale: str | None = None
    touchpoint: str | None = None
    question: str | None = None
    segment: dict[str, str] = field(default_factory=dict)
    #: The survey's re-click window in seconds (claim ``w``, set by actions from ``reclick_window``);
    #: None on links minted without one: the collector's ``CSAT_RECLICK_WINDOW_S`` applies.
    reclick_window_s: int | None = None

    @property
    def rating_id(self) -> str:
        """One answer per (survey, customer): every link and retry for the pair maps to this id."""
        return survey_rating_id(self.survey_id, self.customer_id)

    def answer(self, score: str, comment: str | None) -> RatingIn:
        """The rating this link stands for, with the score and comment the person confirmed."""
        return RatingIn.model_validate(
            {
                "metric": self.metric,
                "scale": self.scale,
                "score": score.strip(),
                "customer": {"id": self.customer_id, "locale": self.locale},
                "segment": self.segment,
                "touchpoint": self.touchpoint or "email",
                "comment": (comment or "").strip() or None,
                "survey_id": self.survey_id,
            }
        )

    def to_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "s": self.survey_id,
            "c": self.customer_id,
            "m": self.metric,
            "k": self.scale,
            "x": int(self.expires_at.timestamp()),
        }
        optional = {"l": self.locale, "t": self.touchpoint, "q": self.question, "g": self.segment or None}
        claims.update({k: v for k, v in optional.items() if v})
        if self.reclick_window_s is not None:
            claims["w"] = self.reclick_window_s
        return claims

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> EmailLink:
        return cls(
            survey_id=str(claims["s"]),
            customer_id=str(claims["c"]),
            metric=str(claims["m"]),
            scale=str(claims["k"]),
            expires_at=datetime.fromtimestamp(int(claims["x"]), UTC),
            locale=claims.get("l"),
            touchpoint=claims.get("t"),
            question=claims.get("q"),
            segment=dict(claims.get("g") or {}),
            reclick_window_s=None if claims.get("w") is None else max(0, int(claims["w"])),
        )


class LinkSigner:
    """Signs with the newest secret and accepts every listed one, so secrets can be rotated.

    Tokens are HMAC-SHA256 (itsdangerous' default would be HMAC-SHA1). ``accept_sha1`` also reads the
    links of earlier releases until they expire: their expiry is inside them, at most 90 days out.
    """

    def __init__(self, *, secret: str, previous: list[str] | None = None, accept_sha1: bool = False) -> None:
        # itsdangerous signs with the last key and verifies against all of them.
        keys = [*(previous or []), secret]
        self._serializer = serializer(keys)
        self._legacy = URLSafeSerializer(keys, salt=_SALT) if accept_sha1 else None

    def sign(self, link: EmailLink) -> str:
        token = self._serializer.dumps(link.to_claims())
        assert isinstance(token, str)
        return token

    def verify(self, token: str, *, now: datetime) -> EmailLink:
        """The link inside a genuine, unexpired token; raises LinkInvalid or LinkExpired."""
        if len(token) > 4096:
            raise LinkInvalid("token too long")
        try:
            link = EmailLink.from_claims(self._claims(token))
        except (BadSignature, KeyError, TypeError, ValueError) as exc:
            raise LinkInvalid("the link is not valid") from exc
        if now >= link.expires_at:
            raise LinkExpired("the link has expired")
        return link

    def _claims(self, token: str) -> Any:
        try:
            return self._serializer.loads(token)
        except BadSignature:
            if self._legacy is None:
                raise
            return self._legacy.loads(token)
