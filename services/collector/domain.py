"""Rating input model and normalisation: pure, no I/O, so every rule is unit-tested without a broker."""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.collector.ports import Source
from shared.events import (
    AccountRef,
    Claims,
    Consent,
    CustomerRef,
    Identity,
    KeyKind,
    Provenance,
    RatingSubmitted,
)
from shared.identity.sourcekeys import ProofCheck, derive_identity_secret, verify_customer_proof
from shared.scales import Metric, Scale, ScaleError, Sentiment, get_scale, nps_class, parse_score
from shared.vocabulary import ContactIn

_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$"
_SEGMENT_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")

RatingId = Annotated[str, StringConstraints(pattern=_ID)]


class CustomerIn(ContactIn):
    """The customer a rating is about: an id plus the shared contact fields."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    proof: Annotated[str, StringConstraints(max_length=100)] | None = Field(
        default=None,
        description="With a publishable key: the site's server's proof of this customer id "
        "(v1.<unix expiry>.<hex HMAC-SHA256>, see docs/collector.md); without it the id is only a claim",
    )


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, StringConstraints(max_length=200)] | None = None
    tier: Annotated[str, StringConstraints(max_length=40, to_lower=True)] | None = None
    value: float | None = Field(default=None, ge=0)


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: bool = False
    review: bool = False


class RatingIn(BaseModel):
    """One rating as a client sends it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rating_id": "chat-8812-csat",
                    "metric": "csat",
                    "scale": "1-5",
                    "score": 2,
                    "customer": {"id": "cus_1042", "email": "ana@example.com", "locale": "fr"},
                    "segment": {"store": "paris-1", "channel": "chat"},
                    "touchpoint": "support_chat",
                    "comment": "Waited 40 minutes for an answer",
                    "account": {"id": "acc_77", "tier": "strategic", "value": 120000},
                    "occurred_at": "2026-11-23T09:30:00Z",
                    "consent": {"contact": True, "review": False},
                }
            ]
        },
    )

    rating_id: RatingId | None = Field(
        default=None, description="Client key; a retry with the same id is counted once"
    )
    metric: Metric
    scale: Annotated[str, StringConstraints(max_length=20)] | None = Field(
        default=None, description="1-5, 1-3, 1-10, yes-no (csat); 0-10 (nps); 1-7 or 1-5 effort (ces)"
    )
    score: int | float | str | bool = Field(
        description="A number on the scale, or a label such as 'satisfied'"
    )
    customer: CustomerIn
    segment: dict[str, Annotated[str, StringConstraints(min_length=1, max_length=100)]] = Field(
        default_factory=dict, description="Attributes to analyse by: store, channel, country, agent..."
    )
    touchpoint: Annotated[str, StringConstraints(max_length=100)] | None = None
    comment: Annotated[str, StringConstraints(max_length=5000)] | None = None
    account: AccountIn | None = None
    occurred_at: AwareDatetime | None = Field(default=None, description="When the interaction happened")
    consent: ConsentIn = Field(default_factory=ConsentIn)
    survey_id: Annotated[str, StringConstraints(max_length=128)] | None = None

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _occurred_at_is_text(cls, value: Any) -> Any:
        return check_occurred_at(value)

    @field_validator("segment")
    @classmethod
    def _segment_keys(cls, value: dict[str, str]) -> dict[str, str]:
        return check_segment(value)


def check_segment(value: dict[str, str]) -> dict[str, str]:
    """The segment rules every input shares (ratings, interactions): at most 20 lower-case keys."""
    if len(value) > 20:
        raise ValueError("at most 20 segment attributes")
    for key in value:
        if not _SEGMENT_KEY.match(key):
            raise ValueError(f"segment key {key!r} must be lower-case letters, digits or _ (max 40)")
    return value


def check_occurred_at(value: Any) -> Any:
    """RFC 3339 text only, as documented: pydantic would read a bare number as seconds since 1970."""
    if isinstance(value, int | float):  # bool is an int too
        raise ValueError("occurred_at must be an RFC 3339 date-time string such as 2026-11-23T09:30:00Z")
    return value


class RatingRejected(ValueError):
    """Raised by normalisation with the offending field path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def new_rating_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Trust:
    """What vouches for the ratings of one request: the credential's kind and, for a publishable key,
    the source's identity secrets (current and previous) its customer proofs are checked against."""

    key_kind: KeyKind
    identity_secrets: tuple[str, ...] = ()


def identity_secrets(
    *, platform_key: str, source: Source, now: datetime, grace: timedelta
) -> tuple[str, ...]:
    """The source's identity secrets a proof may be signed with: the current version, and the previous
    one for ``grace`` after a rotation (pages already showing proofs keep working meanwhile)."""
    version = source.identity_version
    rotated = source.identity_rotated_at
    if version > 1 and rotated is not None and now - rotated < grace:
        return _derived(platform_key, source.source_id, version) + _derived(
            platform_key, source.source_id, version - 1
        )
    return _derived(platform_key, source.source_id, version)


@functools.lru_cache(maxsize=4096)
def _derived(platform_key: str, source_id: str, version: int) -> tuple[str]:
    """One source version's identity secret, derived once (an HMAC per request was a tenth of a
    publishable-key rating's CPU); a pure function of the platform key, which is in memory anyway."""
    return (derive_identity_secret(platform_key=platform_key, source_id=source_id, version=version),)


PROOF_REFUSALS = {
    ProofCheck.MALFORMED: "customer.proof is not a proof (v1.<unix expiry>.<64 hex digits>)",
    ProofCheck.EXPIRED: "customer.proof has expired; the page must get a fresh one from the site's server",
    ProofCheck.TOO_LONG: "customer.proof is valid for more than 7 days; sign it with a nearer expiry",
    ProofCheck.WRONG: "customer.proof does not match this customer id and the source's identity secret",
}


def provenance_of(rating: RatingIn, trust: Trust, *, now: datetime) -> Provenance:
    """Who vouches for the rating. A publishable key's customer id is a fact only with a valid proof.

    Raises ``RatingRejected`` (field ``customer.proof``) for a proof that does not verify: a page
    showing a stale or forged proof learns it at once instead of posting ratings nobody acts on.
    """
    if trust.key_kind is not KeyKind.PUBLISHABLE:
        return _provenance(trust.key_kind, Identity.VERIFIED)
    proof = rating.customer.proof
    if proof is None:
        return _provenance(trust.key_kind, Identity.CLAIMED)
    check = verify_customer_proof(
        identity_secrets=list(trust.identity_secrets),
        customer_id=rating.customer.id,
        proof=proof,
        now=int(now.timestamp()),
    )
    if check is not ProofCheck.VALID:
        raise RatingRejected("customer.proof", PROOF_REFUSALS[check])
    return _provenance(trust.key_kind, Identity.VERIFIED)


@functools.cache
def _provenance(key_kind: KeyKind, identity: Identity) -> Provenance:
    """One frozen ``Provenance`` per (kind, identity), shared: a model per rating cost a microsecond."""
    return Provenance(key_kind=key_kind, identity=identity)


def normalize(
    rating: RatingIn,
    *,
    received_at: datetime,
    rating_id: str | None = None,
    source: str | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
    provenance: Provenance | None = None,
) -> RatingSubmitted:
    """Validate the score on its scale and compute every derived field once, for all consumers.

    With a publishable key's ``provenance``, contact details, consent and account move to ``claims``:
    what a public key posted is kept, but no consumer can take it for a fact.
    """
    try:
        scale = get_scale(rating.metric, rating.scale)
        score = parse_score(scale, rating.score)
    except ScaleError as exc:
        raise RatingRejected(exc.field, str(exc)) from exc
    occurred = (rating.occurred_at or received_at).astimezone(UTC)
    if occurred - received_at > max_future_skew:
        raise RatingRejected("occurred_at", "occurred_at is in the future")
    sentiment = scale.sentiment(score)
    customer: dict[str, Any] = rating.customer.model_dump(exclude={"proof"})
    account = AccountRef(**rating.account.model_dump()) if rating.account else None
    consent = Consent(**rating.consent.model_dump())
    claims = None
    if provenance is not None and provenance.key_kind is KeyKind.PUBLISHABLE:
        claims = Claims(
            email=customer.pop("email"), phone=customer.pop("phone"), consent=consent, account=account
        )
        account, consent = None, Consent()
    return RatingSubmitted(
        rating_id=rating.rating_id or rating_id or new_rating_id(),
        metric=rating.metric,
        scale=scale.name,
        score=score,
        normalized=scale.normalized(score),
        sentiment=sentiment,
        positive=sentiment is Sentiment.POSITIVE,
        nps_class=nps_class(score) if rating.metric is Metric.NPS else None,
        customer=CustomerRef(**customer),
        segment={k: v.strip() for k, v in rating.segment.items()},
        touchpoint=rating.touchpoint,
        comment=(rating.comment or "").strip() or None,
        account=account,
        consent=consent,
        source=source,
        survey_id=rating.survey_id,
        occurred_at=occurred,
        received_at=received_at,
        provenance=provenance,
        claims=claims,
    )


def fingerprint(rating: RatingSubmitted, *, client_occurred_at: datetime | None) -> bytes:
    """What makes two submissions "the same rating": the normalised content, not its spelling.

    ``"satisfied"`` and ``4`` on a 1-5 scale are the same answer; the receive time is not part of
    it, and neither is ``occurred_at`` when the client left it to the server, nor the ``revision`` a
    re-click publishes it under.
    """
    content = rating.model_dump(mode="json", exclude={"rating_id", "received_at", "occurred_at", "revision"})
    content["occurred_at"] = client_occurred_at.astimezone(UTC).isoformat() if client_occurred_at else None
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).digest()


@dataclass(frozen=True, slots=True)
class EncodedRating:
    """A normalised rating as the bytes it is published as, with what the intake needs beside them.

    ``normalize_encoded`` builds it without a ``RatingSubmitted`` model: the same JSON (byte for byte)
    and the same fingerprint as ``normalize`` + ``fingerprint`` + the event's JSON, at a fraction of
    the cost (the models' construction, validation and three serialisations were most of a rating's CPU).
    """

    rating_id: str
    metric: Metric
    customer_id: str
    received_at: datetime
    value: bytes
    fingerprint: bytes | None


#: ``RatingSubmitted``'s fields in order: ``normalize_encoded`` writes them by hand, so a new field must
#: be added there too (the import fails until it is; the equivalence tests then check the bytes).
_EVENT_FIELDS = (
    "rating_id",
    "metric",
    "scale",
    "score",
    "normalized",
    "sentiment",
    "positive",
    "nps_class",
    "customer",
    "segment",
    "touchpoint",
    "comment",
    "account",
    "consent",
    "source",
    "survey_id",
    "occurred_at",
    "received_at",
    "provenance",
    "claims",
    "revision",
)
if tuple(RatingSubmitted.model_fields) != _EVENT_FIELDS:  # pragma: no cover - a guard for the next change
    raise RuntimeError("RatingSubmitted's fields changed: update normalize_encoded and _EVENT_FIELDS")
#: Scales by (metric, name as sent): a batch asks for the same few, and ``get_scale`` normalises the
#: name each time. Only names that resolve are kept, and only so many (names come from clients).
_SCALES: dict[tuple[Metric, str | None], Scale] = {}


def _scale(metric: Metric, name: str | None) -> Scale:
    scale = get_scale(metric, name)  # raises ScaleError for an unknown one
    if len(_SCALES) < 1024:
        _SCALES[metric, name] = scale
    return scale


_NO_CONSENT = {"contact": False, "review": False}
_POSITIVE = Sentiment.POSITIVE
_NPS = Metric.NPS


# Whole on purpose: the rating hot path, run once per rating and per batch item (about 9 us a call here).
# A split into named steps (checks, event, fingerprint) would pass a dozen fields through three more
# calls per rating, about 0.7 us (~7 %) measured beside it; and flat, the event's fields and the
# fingerprint's stay side by side, so a field added to one is seen missing from the other.
def normalize_encoded(
    rating: RatingIn,
    *,
    received_at: datetime,
    rating_id: str | None = None,
    source: str | None = None,
    max_future_skew: timedelta = timedelta(minutes=5),
    provenance: Provenance | None = None,
    keyed: bool = True,
) -> EncodedRating:
    """``normalize`` written straight to the event's JSON (and its fingerprint when ``keyed``).

    The same checks and the same refusals (``RatingRejected`` naming the field) as ``normalize``; the
    value is the bytes ``RatingSubmitted``'s serializer writes for the event ``normalize`` builds, and
    the fingerprint the one ``fingerprint`` computes from it (tests/unit/test_collector_domain.py
    checks both over generated ratings).
    """
    metric = rating.metric
    try:
        scale = _SCALES.get((metric, rating.scale)) or _scale(metric, rating.scale)
        score = parse_score(scale, rating.score)
    except ScaleError as exc:
        raise RatingRejected(exc.field, str(exc)) from exc
    client_occurred = rating.occurred_at
    occurred = (client_occurred or received_at).astimezone(UTC)
    if occurred - received_at > max_future_skew:
        raise RatingRejected("occurred_at", "occurred_at is in the future")
    sentiment = scale.sentiment(score)
    c = rating.customer
    a = rating.account
    account = None if a is None else {"id": a.id, "tier": a.tier, "value": a.value}
    consent = {"contact": rating.consent.contact, "review": rating.consent.review}
    email, phone = c.email, c.phone
    claims = None
    prov = None
    if provenance is not None:
        prov = {"key_kind": provenance.key_kind, "identity": provenance.identity}
        if provenance.key_kind is KeyKind.PUBLISHABLE:
            claims = {"email": email, "phone": phone, "consent": consent, "account": account}
            email = phone = account = None
            consent = _NO_CONSENT
    rid = rating.rating_id or rating_id or new_rating_id()
    comment = rating.comment
    customer = {"id": c.id, "email": email, "phone": phone, "locale": c.locale, "timezone": c.timezone}
    segment = {k: v.strip() for k, v in rating.segment.items()}
    normalized = scale.normalized(score)
    positive = sentiment is _POSITIVE
    nps = nps_class(score) if metric is _NPS else None
    text = (comment.strip() or None) if comment else None
    event = {
        "rating_id": rid,
        "metric": metric,
        "scale": scale.name,
        "score": score,
        "normalized": normalized,
        "sentiment": sentiment,
        "positive": positive,
        "nps_class": nps,
        "customer": customer,
        "segment": segment,
        "touchpoint": rating.touchpoint,
        "comment": text,
        "account": account,
        "consent": consent,
        "source": source,
        "survey_id": rating.survey_id,
        "occurred_at": occurred,
        "received_at": received_at,
        "provenance": prov,
        "claims": claims,
        "revision": 0,  # the JSON API publishes first answers only (re-clicks: email links)
    }
    # orjson writes a StrEnum (metric, sentiment, nps class, kinds) as its value.
    value = orjson.dumps(event, option=orjson.OPT_UTC_Z)
    mark = None
    if keyed:
        # ``fingerprint``'s content: the same dict, less the event's id, times and revision, plus the
        # client's occurred_at (keys sorted, so their order does not matter); no second dict per rating.
        del event["rating_id"], event["received_at"], event["revision"]
        event["occurred_at"] = client_occurred.astimezone(UTC).isoformat() if client_occurred else None
        mark = hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).digest()
    return EncodedRating(
        rating_id=rid,
        metric=metric,
        customer_id=c.id,
        received_at=received_at,
        value=value,
        fingerprint=mark,
    )
