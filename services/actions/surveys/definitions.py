"""Survey definitions: YAML (or JSON) validated on load with errors at the field, like the rules. Pure code.

A survey says which interactions it follows (``on`` types and ``when`` conditions, in the rules'
condition language), what it asks (metric, scale, a question and an optional follow-up in every locale),
how (channels in order of preference), when (delay, quiet hours), how often (sampling, per-customer
recontact days across all surveys), how long answers are taken (answer window), one reminder, and when
it stops (answered, opted out, erased). docs/surveys.md has a complete example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from services.actions.rules import check_conditions, parse_duration
from services.actions.yamlio import load_yaml
from shared.gsm7 import SURVEY_QUESTION_UNITS, to_gsm7, units
from shared.quiethours import QuietHours
from shared.scales import Metric, ScaleError, get_scale
from shared.vocabulary import LOCALES

DEFAULT_SURVEYS_FILE = Path(__file__).resolve().parents[1] / "playbooks" / "surveys.yaml"

_TYPE_PATTERN = re.compile(r"^(\*|[a-z][a-z0-9_]{0,30}(\.[a-z][a-z0-9_]{0,30}){0,3}(\.\*)?)$")

#: Facts a survey's ``when`` may test (``attributes.<name>`` and ``segment.<dimension>`` too).
INTERACTION_FACTS = frozenset(
    {
        "type",
        "source",
        "customer.locale",
        "customer.has_email",
        "customer.has_phone",
        "account.id",
        "account.tier",
        "account.value",
        "consent.contact",
    }
)
FACT_PREFIXES = ("attributes.", "segment.")


class SurveyChannel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    IN_APP = "in_app"


class StopCondition(StrEnum):
    ANSWERED = "answered"
    OPTED_OUT = "opted_out"
    ERASED = "erased"


#: What no survey may keep sending through: the law, not a preference.
REQUIRED_STOPS = frozenset({StopCondition.OPTED_OUT, StopCondition.ERASED})


def _duration(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str | int) and not isinstance(value, bool) else value


def human(duration: timedelta) -> str:
    """A duration as the definitions write it: ``7d``, ``36h``, ``15m``, ``90s``."""
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _texts(value: Any, *, max_length: int) -> Any:
    """One text per locale of ``LOCALES``, none missing, none extra, none empty or too long."""
    if not isinstance(value, Mapping):
        raise ValueError(f"one text per locale: {', '.join(LOCALES)}")
    missing = [loc for loc in LOCALES if not str(value.get(loc) or "").strip()]
    if missing:
        raise ValueError(f"{missing[0]}: a text is required in every locale ({', '.join(LOCALES)})")
    extra = sorted(set(value) - set(LOCALES))
    if extra:
        raise ValueError(f"{extra[0]}: unknown locale; use {', '.join(LOCALES)}")
    for loc in LOCALES:
        if len(str(value[loc]).strip()) > max_length:
            raise ValueError(f"{loc}: at most {max_length} characters")
    return {loc: str(value[loc]).strip() for loc in LOCALES}


class Reminder(BaseModel):
    """One reminder to whoever has not answered ``after`` the invitation went out."""

    model_config = ConfigDict(extra="forbid")

    after: timedelta

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("the reminder goes some time after the invitation: 1d, 3d...")
        return value


class SurveyDef(BaseModel):
    """One survey; fields are validated in order, so later checks can rely on earlier ones."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    description: str = ""
    enabled: bool = True
    on: list[str] = Field(min_length=1, max_length=20, description="Interaction types; ticket.* or *")
    when: dict[str, Any] = Field(default_factory=dict)
    metric: Metric = Metric.CSAT
    scale: str | None = Field(default=None, validate_default=True)
    question: dict[str, str]
    follow_up: dict[str, str] | None = None
    channels: list[SurveyChannel] = Field(default=[SurveyChannel.EMAIL], min_length=1)
    delay: timedelta = timedelta(0)
    sampling: float = Field(default=100.0, gt=0, le=100, description="Percent of interactions surveyed")
    recontact_days: int = Field(default=30, ge=0, le=365, description="No survey at all within this time")
    quiet_hours: str | None = Field(default=None, description="21:00-08:00 in the customer's zone")
    answer_window: timedelta = timedelta(days=7)
    reminder: Reminder | None = None
    stop_on: list[StopCondition] = Field(default_factory=lambda: list(StopCondition))
    max_age: timedelta = Field(default=timedelta(days=7), description="Older interactions are not surveyed")
    reclick_window: timedelta = Field(default=timedelta(minutes=15), description="A second click replaces")

    @field_validator("on")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for i, pattern in enumerate(value):
            if not _TYPE_PATTERN.match(pattern):
                raise ValueError(
                    f"{i}: {pattern!r} is not an interaction type (order.delivered, ticket.*, *)"
                )
        return value

    @field_validator("when")
    @classmethod
    def _conditions(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_conditions(value, known=INTERACTION_FACTS, prefixes=FACT_PREFIXES, path="")
        return value

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: str | None, info: ValidationInfo) -> str | None:
        metric = info.data.get("metric")
        if metric is None:
            return value
        try:
            return get_scale(metric, value).name
        except ScaleError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("question", mode="before")
    @classmethod
    def _question(cls, value: Any) -> Any:
        return _texts(value, max_length=200)

    @field_validator("follow_up", mode="before")
    @classmethod
    def _follow_up(cls, value: Any) -> Any:
        return None if value is None else _texts(value, max_length=200)

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[SurveyChannel], info: ValidationInfo) -> list[SurveyChannel]:
        if len(set(value)) != len(value):
            raise ValueError("each channel once, in order of preference")
        question: Mapping[str, str] = info.data.get("question") or {}
        if SurveyChannel.SMS in value:
            for loc, text in question.items():
                size = units(to_gsm7(text)) or 0
                if size > SURVEY_QUESTION_UNITS:
                    raise ValueError(
                        f"question.{loc}: too long for one SMS ({size} of {SURVEY_QUESTION_UNITS} "
                        "characters once accents are simplified); shorten it or remove sms"
                    )
        return value

    @field_validator("delay", "answer_window", "max_age", "reclick_window", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        return _duration(value)

    @field_validator("answer_window")
    @classmethod
    def _window(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=1) <= value <= timedelta(days=90):
            raise ValueError("answers are taken for 1m to 90d (minutes let a test see expiry happen)")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str | None) -> str | None:
        if value is not None:
            QuietHours.parse(value)
        return value

    @field_validator("reminder")
    @classmethod
    def _reminder(cls, value: Reminder | None, info: ValidationInfo) -> Reminder | None:
        window: timedelta | None = info.data.get("answer_window")
        if value is not None and window is not None and value.after >= window:
            raise ValueError(f"after: the reminder must go before answers close ({human(window)})")
        return value

    @field_validator("stop_on")
    @classmethod
    def _stops(cls, value: list[StopCondition]) -> list[StopCondition]:
        missing = sorted(REQUIRED_STOPS - set(value))
        if missing:
            raise ValueError(
                f"{missing[0].value} cannot be removed: an opted-out or erased customer is never asked"
            )
        return value

    @field_validator("reclick_window")
    @classmethod
    def _reclick(cls, value: timedelta) -> timedelta:
        if not timedelta(0) <= value <= timedelta(hours=24):
            raise ValueError("a re-click replaces the answer for 0 to 24h")
        return value

    @property
    def quiet(self) -> QuietHours | None:
        return QuietHours.parse(self.quiet_hours) if self.quiet_hours else None

    def follows(self, interaction_type: str) -> bool:
        """``on`` lists the type itself, a ``prefix.*`` covering it, or ``*``."""
        for pattern in self.on:
            if pattern in ("*", interaction_type):
                return True
            if pattern.endswith(".*") and interaction_type.startswith(pattern[:-1]):
                return True
        return False


class SurveySet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    surveys: list[SurveyDef]


@dataclass(frozen=True, slots=True)
class SurveyError:
    """One problem: the survey (id, or ``#index``) and the field path within it."""

    survey: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"survey {self.survey}: " if self.survey else ""
        return f"{where}{self.field}: {self.message}"


class SurveyFileError(ValueError):
    """A survey set that cannot be used; the message names each survey and field at fault."""

    def __init__(self, origin: str, errors: Sequence[SurveyError]) -> None:
        self.origin = origin
        self.errors = list(errors)
        super().__init__(f"{origin}: " + "; ".join(str(e) for e in self.errors))


#: Validators that name a precise sub-field first ("fr: a text is required") for these fields.
_NESTED = ("when", "question", "follow_up", "on", "reminder", "channels")


def _errors_from(exc: ValidationError, data: Mapping[str, Any]) -> list[SurveyError]:
    out: list[SurveyError] = []
    for err in exc.errors():
        loc = list(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        survey: str | None = None
        if len(loc) >= 2 and loc[0] == "surveys" and isinstance(loc[1], int):
            items = data.get("surveys")
            item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
            sid = item.get("id") if isinstance(item, Mapping) else None
            survey = str(sid) if sid else f"#{loc[1]}"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc)
        head, sep, tail = msg.partition(": ")
        if sep and loc and loc[-1] in _NESTED and " " not in head:
            # A head naming another field of the survey is absolute (channels -> "question.fr: ...").
            absolute = head.split(".")[0] in SurveyDef.model_fields and head.split(".")[0] != loc[-1]
            field, msg = (head if absolute else f"{field}.{head}"), tail
        out.append(SurveyError(survey, field or "file", msg))
    return out


def parse_surveys(data: Any, *, origin: str = "<surveys>") -> SurveySet:
    """Validate a parsed survey document; raises SurveyFileError naming survey and field."""
    if not isinstance(data, Mapping):
        raise SurveyFileError(origin, [SurveyError(None, "file", "a mapping with `surveys:` is expected")])
    try:
        surveys = SurveySet.model_validate(data)
    except ValidationError as exc:
        raise SurveyFileError(origin, _errors_from(exc, data)) from exc
    seen: set[str] = set()
    errors = []
    for i, survey in enumerate(surveys.surveys):
        if survey.id in seen:
            errors.append(
                SurveyError(survey.id, "id", f"survey id {survey.id!r} is used twice (survey #{i})")
            )
        seen.add(survey.id)
    if errors:
        raise SurveyFileError(origin, errors)
    return surveys


def load_surveys_text(text: str, *, origin: str = "<surveys>") -> SurveySet:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise SurveyFileError(origin, [SurveyError(None, "file", f"not valid YAML: {exc}")]) from exc
    return parse_surveys(data, origin=origin)


def load_surveys_file(path: Path = DEFAULT_SURVEYS_FILE) -> SurveySet:
    return load_surveys_text(path.read_text(encoding="utf-8"), origin=str(path))
