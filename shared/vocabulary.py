"""Names and contact fields that more than one service relies on: one home, so they cannot drift apart.

The notifier ships one template per name in every locale; the actions' rules may name only these. The
contact fields are the same everywhere a customer's address is accepted (a rating, the customers API).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

#: The message templates the notifier ships (each in every locale of ``LOCALES``).
TEMPLATE_NAMES: tuple[str, ...] = (
    "csm_alert",
    "sla_escalation",
    "low_score_followup",
    "resurvey_open_question",
    "support_callback",
    "nurture_education",
    "thank_you",
    "referral_invite",
    "review_invite",
    "segment_alert",
    "theme_alert",
)

#: The survey invitation (and its reminder): rendered by the notifier's survey_messages, not a text template.
SURVEY_TEMPLATE = "survey_invitation"

#: Languages every template and page ships in; the first is the fallback.
LOCALES: tuple[str, ...] = ("en", "fr")

PHONE_PATTERN = r"^\+[1-9]\d{6,14}$"
LOCALE_PATTERN = r"^[a-z]{2}(-[A-Z]{2})?$"

Phone = Annotated[str, StringConstraints(pattern=PHONE_PATTERN)]
Locale = Annotated[str, StringConstraints(pattern=LOCALE_PATTERN)]
Timezone = Annotated[str, StringConstraints(max_length=64)]


class ContactIn(BaseModel):
    """How a customer can be reached and spoken to: the fields a rating and the customers API share."""

    model_config = ConfigDict(extra="forbid")

    email: EmailStr | None = None
    phone: Phone | None = Field(default=None, description="E.164, e.g. +33612345678")
    locale: Locale | None = None
    timezone: Timezone | None = None
