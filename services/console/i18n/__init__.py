"""The console's languages (pure): which one a request gets, its texts, and numbers and dates per locale.

Texts are checked-in Python dictionaries, one module per area of the console (``common``, ``auth``,
``home``, ``admin``; a new view adds its own module to ``AREAS``), each with an ``EN`` and an ``FR``
dictionary: nothing to compile at install, and ``tests/unit/test_console_i18n.py`` fails when a key,
or a ``{placeholder}``, is missing in one language or used by a template without being defined.
Numbers, percentages and dates are formatted by Babel with the locale's own conventions.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from types import ModuleType
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import NumberPattern, format_percent, parse_pattern

from services.console.i18n import (
    admin,
    alerts,
    auth,
    common,
    customers,
    home,
    rules,
    scores,
    segments,
    verbatims,
)
from shared.vocabulary import LOCALES

DEFAULT_LOCALE = LOCALES[0]

#: Every area's catalog module; each defines ``EN`` and ``FR`` with the same keys.
AREAS: tuple[ModuleType, ...] = (
    common,
    auth,
    home,
    admin,
    rules,
    scores,
    segments,
    alerts,
    verbatims,
    customers,
)


def _merge(language: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for area in AREAS:
        merged.update(getattr(area, language.upper()))
    return merged


CATALOGS: Mapping[str, Mapping[str, str]] = {locale: _merge(locale) for locale in LOCALES}


def supported(value: str | None) -> str | None:
    """``fr``, ``fr-CA``, ``FR_fr`` -> ``fr``; None for a language the console does not speak."""
    if not value:
        return None
    primary = value.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in CATALOGS else None


def from_accept_language(header: str | None) -> str | None:
    """The best supported language of an ``Accept-Language`` header (q-values honoured), or None."""
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        locale = supported(tag)
        if locale is not None and quality > 0:
            ranked.append((-quality, position, locale))
    return min(ranked)[2] if ranked else None


def negotiate(*, query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """``?lang=`` first (a shared link), then the person's switch (cookie), then the browser's wish."""
    return supported(query) or supported(cookie) or from_accept_language(accept_language) or DEFAULT_LOCALE


@lru_cache(maxsize=16)
def _locale(name: str) -> Locale:
    return Locale.parse(name)


@lru_cache(maxsize=32)
def _number_pattern(pattern: str) -> NumberPattern:
    return parse_pattern(pattern)


class Translator:
    """Texts and formats of one locale; templates get it as ``tr`` and its ``t`` as ``t``."""

    def __init__(self, locale: str, *, time_zone: ZoneInfo) -> None:
        self.locale = locale if locale in CATALOGS else DEFAULT_LOCALE
        self.time_zone = time_zone
        self._texts = CATALOGS[self.locale]

    def t(self, key: str, **params: object) -> str:
        """The text of ``key``; a missing key shows itself (and the unit test fails on it)."""
        text = self._texts.get(key) or CATALOGS[DEFAULT_LOCALE].get(key) or key
        return text.format(**params) if params else text

    def number(self, value: float, *, digits: int = 0) -> str:
        # What ``format_decimal`` does, with the locale and the pattern parsed once (a page of a thousand
        # alerts formats thousands of numbers: parsing them each time was most of its rendering).
        pattern = _number_pattern("#,##0" + ("." + "0" * digits if digits else ""))
        return str(pattern.apply(value, _locale(self.locale)))

    def percent(self, value: float, *, digits: int = 1) -> str:
        """``value`` is a ratio (0.705 -> "70.5%" / "70,5 %")."""
        pattern = _locale(self.locale).percent_formats[None].pattern
        if digits:
            pattern = pattern.replace("#,##0", "#,##0." + "0" * digits, 1)
        return format_percent(value, format=pattern, locale=self.locale)

    def date(self, value: datetime) -> str:
        return format_date(value.astimezone(self.time_zone), format="medium", locale=_locale(self.locale))

    def datetime(self, value: datetime | None, *, empty: str = "—") -> str:
        if value is None:
            return empty
        return format_datetime(value, format="medium", tzinfo=self.time_zone, locale=_locale(self.locale))
