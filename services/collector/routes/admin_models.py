"""Bodies of the admin API: sources and keys, email-link and SMS-survey requests, and their answers."""

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.collector.domain import AccountIn, CustomerIn
from services.collector.ports import KeyInfo, Source
from shared.events import KeyKind
from shared.scales import Metric

#: The kinds of key an admin can issue: publishable for pages and apps, secret for servers.
IssuableKind = Literal[KeyKind.PUBLISHABLE, KeyKind.SECRET]

SourceId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def _origins(value: list[str]) -> list[str]:
    for origin in value:
        if not _ORIGIN.match(origin):
            raise ValueError(f"{origin!r} is not an origin like https://shop.example.com (no path, no *)")
    return sorted(set(value))


class SourceIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "source_id": "shop-web",
                    "name": "Web shop widget",
                    "allowed_origins": ["https://shop.example.com"],
                    "rate_per_s": 50,
                    "rate_burst": 100,
                }
            ]
        },
    )

    source_id: SourceId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    allowed_origins: list[str] = Field(default_factory=list, description="Browser origins allowed to post")
    rate_per_s: float | None = Field(
        default=None, ge=0, le=1e9, description="Per-key limit; default CSAT_RATE_KEY_PER_S"
    )
    rate_burst: int | None = Field(default=None, ge=1, le=2**31 - 1)  # a PostgreSQL integer
    key_kind: IssuableKind = Field(
        default=KeyKind.PUBLISHABLE,
        description="The first key's kind: publishable (pk_, for pages and apps: what it posts about a "
        "person is a claim) or secret (sk_, for servers: facts)",
    )

    _check_origins = field_validator("allowed_origins")(_origins)

    def as_source(self) -> Source:
        return Source(
            source_id=self.source_id,
            name=self.name,
            allowed_origins=tuple(self.allowed_origins),
            rate_per_s=self.rate_per_s,
            rate_burst=self.rate_burst,
        )


class SourcePatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"allowed_origins": ["https://shop.example.com"], "disabled": False}]
        },
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    allowed_origins: list[str] | None = None
    rate_per_s: float | None = Field(default=None, ge=0, le=1e9)  # a PostgreSQL real, bounded
    rate_burst: int | None = Field(default=None, ge=1, le=2**31 - 1)  # a PostgreSQL integer
    disabled: bool | None = None

    @field_validator("allowed_origins")
    @classmethod
    def _check(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _origins(value)


class SourceOut(BaseModel):
    source_id: str
    name: str
    allowed_origins: list[str]
    rate_per_s: float | None
    rate_burst: int | None
    disabled: bool
    created_at: datetime | None

    @classmethod
    def of(cls, s: Source) -> "SourceOut":
        return cls(
            source_id=s.source_id,
            name=s.name,
            allowed_origins=list(s.allowed_origins),
            rate_per_s=s.rate_per_s,
            rate_burst=s.rate_burst,
            disabled=s.disabled,
            created_at=s.created_at,
        )


class KeyOut(BaseModel):
    key_id: str
    source_id: str
    kind: KeyKind = Field(description="publishable (pk_, or a pre-split csk_ key) or secret (sk_)")
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    @classmethod
    def of(cls, k: KeyInfo) -> "KeyOut":
        return cls(
            key_id=k.key_id,
            source_id=k.source_id,
            kind=k.kind,
            created_at=k.created_at,
            expires_at=k.expires_at,
            revoked_at=k.revoked_at,
        )


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself; shown only now, only its hash is stored")


class SourceCreated(BaseModel):
    source: SourceOut
    key: NewKeyOut


class KeyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"kind": "secret"}, {"kind": "publishable", "expire_others_in_s": 3600}]
        },
    )

    kind: IssuableKind = Field(
        default=KeyKind.PUBLISHABLE,
        description="publishable (pk_, embedded in pages and apps) or secret (sk_, kept on servers)",
    )
    expire_others_in_s: int | None = Field(
        default=None,
        ge=0,
        le=366 * 86_400,  # a year and a day: beyond, a datetime overflows (found by the auth fuzzing)
        description="Rotation: the source's other keys of the same kind stop working after this delay "
        "(at most 366 days)",
    )


class IdentitySecretRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rotate": True}]})

    rotate: bool = Field(
        default=False,
        description="Issue a new secret; the previous one keeps verifying proofs for "
        "CSAT_IDENTITY_SECRET_GRACE_H (7 days)",
    )


class IdentitySecretOut(BaseModel):
    source_id: str
    version: int
    identity_secret: str = Field(
        description="For the site's servers only: they sign customer ids with it (HMAC-SHA256); never "
        "put it in a page"
    )
    previous_valid_until: datetime | None = Field(
        default=None, description="Until when proofs signed with the previous secret still verify"
    )


class LinkRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "survey_id": "order-5512-delivery",
                    "customer": {"id": "cus_1042", "locale": "fr"},
                    "metric": "csat",
                    "scale": "1-5",
                    "question": "How satisfied are you with your delivery?",
                    "segment": {"store": "paris-1", "channel": "email"},
                    "touchpoint": "delivery",
                    "expires_in_h": 168,
                }
            ]
        },
    )

    survey_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    customer: CustomerIn = Field(description="Only id and locale go into the link; contact details do not")
    metric: Metric = Metric.CSAT
    scale: str | None = None
    question: Annotated[str, StringConstraints(max_length=200)] | None = None
    segment: dict[str, Annotated[str, StringConstraints(max_length=100)]] = Field(default_factory=dict)
    touchpoint: Annotated[str, StringConstraints(max_length=100)] | None = None
    expires_in_h: float | None = Field(default=None, gt=0, le=24 * 90)


class ScoreLink(BaseModel):
    score: int
    url: str


class LinksOut(BaseModel):
    rating_id: str = Field(description="The rating id every link of this (survey, customer) records")
    expires_at: datetime
    confirm_url: str = Field(description="The link without a score: the page asks for one")
    links: list[ScoreLink]


class SmsSurveyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "phone": "+33612345678",
                    "customer": {"id": "cus_1042", "locale": "fr"},
                    "survey_id": "visit-2231",
                    "metric": "csat",
                    "scale": "1-5",
                    "segment": {"store": "lyon-2"},
                    "touchpoint": "store_visit",
                }
            ]
        },
    )

    phone: Annotated[str, StringConstraints(max_length=32)] = Field(
        description="E.164; stored only as a keyed hash"
    )
    customer: CustomerIn
    survey_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    metric: Metric = Metric.CSAT
    scale: str | None = None
    segment: dict[str, Annotated[str, StringConstraints(max_length=100)]] = Field(default_factory=dict)
    touchpoint: Annotated[str, StringConstraints(max_length=100)] | None = None
    account: AccountIn | None = None
    expires_at: AwareDatetime | None = None
    answer_link: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None,
        description="For a survey invitation: its signed answer link (``.../v1/email/<token>``, as actions "
        "puts it in the invitation, or the token alone). The survey, customer, scale, segment and end of "
        "the answer window then come from the link (the other fields must agree or be left out), the "
        "reply takes the invitation's rating id, and registering it again changes nothing.",
    )


class SmsSurveyOut(BaseModel):
    request_id: str
    expires_at: datetime
    reply_hint: str = Field(description="What to append to the SMS so people know how to answer")
