"""The console speaks French and English everywhere: every key in both, every key a page uses defined."""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.console import alertview, customerview, verbatimview
from services.console.i18n import AREAS, CATALOGS, Translator, from_accept_language, negotiate
from services.console.navigation import VIEWS
from shared.identity.scopes import Role
from shared.verbatims import DEFAULT_THEMES, load_taxonomy_file
from shared.vocabulary import LOCALES

CONSOLE = Path(__file__).resolve().parents[2] / "services" / "console"
PARIS = ZoneInfo("Europe/Paris")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("area", AREAS, ids=lambda a: a.__name__.rsplit(".", 1)[-1])
def test_every_key_of_an_area_exists_in_both_languages_with_the_same_placeholders(area: object) -> None:
    en, fr = area.EN, area.FR  # type: ignore[attr-defined] # every area module defines both
    assert set(en) == set(fr), f"only English: {set(en) - set(fr)}; only French: {set(fr) - set(en)}"
    for key in en:
        assert en[key].strip() and fr[key].strip(), key
        assert placeholders(en[key]) == placeholders(fr[key]), key


def test_no_key_is_defined_by_two_areas() -> None:
    seen: dict[str, str] = {}
    for area in AREAS:
        for key in area.EN:
            assert key not in seen, f"{key} in {seen.get(key)} and {area.__name__}"
            seen[key] = area.__name__
    assert set(CATALOGS) == set(LOCALES) and all(len(c) == len(seen) for c in CATALOGS.values())


def used_keys() -> set[str]:
    """Literal keys in templates (``t('x.y')``) and in the console's code (``"x.y"`` of a known area)."""
    prefixes = {key.split(".", 1)[0] for key in CATALOGS["en"]}
    found: set[str] = set()
    for template in (CONSOLE / "templates").glob("*.html"):
        # ``t('nav.' ~ v.key)`` builds a key from a name: those are checked in the next test
        found |= {
            k for k in re.findall(r"\bt\(\s*'([a-z0-9_.]+)'", template.read_text()) if not k.endswith(".")
        }
    for module in CONSOLE.rglob("*.py"):
        if "i18n" in module.parts:
            continue
        for key in re.findall(r"""["']([a-z_]+\.[a-z0-9_.]+)["']""", module.read_text()):
            if key.split(".", 1)[0] in prefixes and not key.endswith((".html", ".py", ".json", ".css")):
                found.add(key)
    return found


def test_every_key_used_by_a_page_or_a_route_is_defined() -> None:
    used = used_keys()
    assert len(used) > 60  # the scan finds the pages' keys (it would pass vacuously on an empty set)
    assert used - set(CATALOGS["en"]) == set()


def test_keys_built_from_names_exist() -> None:
    dynamic = {f"nav.{v.key}" for v in VIEWS} | {f"home.view.{v.key}" for v in VIEWS}
    dynamic |= {f"role.{r.value}" for r in Role} | {f"lang.{code}" for code in LOCALES}
    dynamic |= {f"alerts.status.{s}" for s in alertview.STATUSES}
    dynamic |= {f"alerts.filter.status.{s}" for s in alertview.STATUS_FILTERS}
    dynamic |= {f"alerts.priority.{p}" for p in alertview.PRIORITIES}
    dynamic |= {f"alerts.bad_filter.{f}" for f in ("status", "priority", "escalated")}
    dynamic |= {f"alert.done.{d}" for d in ("ack", "assign", "resolve")}
    dynamic |= {f"verbatims.bad_filter.{f}" for f in verbatimview.FIELDS}
    dynamic |= {f"customerpage.delivery.{s}" for s in set(customerview.DELIVERY_STATES.values())}
    dynamic |= {f"customerpage.trend.{d}" for d in ("declining", "improving", "stable", "flat")}
    dynamic |= {f"verbatims.sentiment.{s}" for s in verbatimview.SENTIMENTS}
    dynamic |= {f"verbatims.language.{lang}" for lang in verbatimview.LANGUAGES}
    dynamic |= {f"verbatims.{k}.{step}" for k in ("themes_help", "trend") for step in ("day", "week")}
    dynamic |= {f"verbatims.theme.{theme}" for theme in load_taxonomy_file(DEFAULT_THEMES).theme_ids}
    assert dynamic - set(CATALOGS["en"]) == set()


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "expected"),
    [
        ("fr", "en", "en-US", "fr"),  # a shared link's ?lang= wins
        (None, "fr", "en-US,en;q=0.9", "fr"),  # then the person's switch
        (None, None, "fr-CA,fr;q=0.9,en;q=0.8", "fr"),
        (None, None, "de-DE,de;q=0.9,en;q=0.5,fr;q=0.4", "en"),
        (None, None, "en;q=0.2, fr;q=0.8", "fr"),  # quality, not order
        (None, None, "fr;q=0, en", "en"),  # q=0 means "not this one"
        ("de", "xx", "es", "en"),  # nothing supported: the default
        (None, None, None, "en"),
    ],
)
def test_negotiation(query: str | None, cookie: str | None, accept: str | None, expected: str) -> None:
    assert negotiate(query=query, cookie=cookie, accept_language=accept) == expected


def test_a_malformed_accept_language_falls_back() -> None:
    assert from_accept_language("fr;q=abc, en;q=0.1") == "en"
    assert from_accept_language(";;,,") is None


def test_numbers_percentages_and_dates_follow_the_locale() -> None:
    en, fr = Translator("en", time_zone=PARIS), Translator("fr", time_zone=PARIS)
    assert en.number(1234567) == "1,234,567" and fr.number(1234567) == "1\u202f234\u202f567"
    assert en.number(70.456, digits=1) == "70.5" and fr.number(70.456, digits=1) == "70,5"
    assert en.percent(0.7) == "70.0%" and fr.percent(0.7) == "70,0\u00a0%"
    assert en.percent(0.755, digits=0) == "76%"
    moment = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)  # already the 5th in Paris
    assert en.date(moment) == "Dec 5, 2026" and fr.date(moment) == "5 déc. 2026"
    assert fr.datetime(moment).startswith("5 déc. 2026") and "00:30" in fr.datetime(moment)
    assert en.datetime(None) == "—"


def test_texts_fill_their_placeholders_and_unknown_keys_show_themselves() -> None:
    fr = Translator("fr", time_zone=PARIS)
    assert fr.t("home.welcome", name="Ana") == "Bienvenue, Ana"
    assert fr.t("no.such.key") == "no.such.key"
    assert Translator("de", time_zone=PARIS).locale == "en"
