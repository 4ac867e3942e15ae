"""Template rendering (Jinja2): ``templates/<locale>/<name>.txt``, first line ``Subject: ...``. Pure.

A channel may have its own variant, ``<name>.<channel>.txt`` (e.g. a 160-character ``.sms.txt``); the
customer's language wins over the variant: a French SMS falls back to the French text, not to English.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    ChainableUndefined,
    Environment,
    FileSystemLoader,
    Template,
    TemplateError,
    TemplateNotFound,
)

from shared.vocabulary import LOCALES, TEMPLATE_NAMES

TEMPLATE_DIR = Path(__file__).parent / "templates"
FALLBACK_LOCALE = "en"

__all__ = ["LOCALES", "TEMPLATE_NAMES", "Rendered", "Templates"]


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    body: str
    locale: str
    variant: str | None = None


class TemplateMissing(LookupError):
    pass


class TemplateBroken(ValueError):
    """A template that exists but cannot render (syntax error, failing filter): a deploy bug, not a retry."""


class Templates:
    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        # Plain-text messages: nothing is interpreted as HTML, so autoescape stays off. Chat providers
        # escape their own markup (Slack mrkdwn) when they build the payload.
        self._env = Environment(  # noqa: S701 - text/plain output, see above
            loader=FileSystemLoader(str(directory)),
            undefined=ChainableUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            # Templates ship with the code: no stat() per render, and lookups (misses too) are cached.
            auto_reload=False,
        )
        self._found: dict[str, Template | None] = {}

    def _lookup(self, path: str) -> Template | None:
        if path not in self._found:
            try:
                self._found[path] = self._env.get_template(path)
            except TemplateNotFound:
                self._found[path] = None
        return self._found[path]

    def render(
        self, name: str, locale: str, context: dict[str, Any], *, channel: str | None = None
    ) -> Rendered:
        """Render in the customer's locale (then English), preferring the channel's own variant."""
        for loc in dict.fromkeys([(locale or FALLBACK_LOCALE).split("-")[0].lower(), FALLBACK_LOCALE]):
            for variant in dict.fromkeys([channel, None]):
                path = f"{loc}/{name}.{variant}.txt" if variant else f"{loc}/{name}.txt"
                template = self._lookup(path)
                if template is None:
                    continue
                try:
                    text = template.render(**context).strip("\n")
                except TemplateError as exc:
                    raise TemplateBroken(f"template {path} failed: {exc}") from exc
                subject = None
                first, _, rest = text.partition("\n")
                if first.startswith("Subject:"):
                    subject = first[len("Subject:") :].strip()
                    text = rest.lstrip("\n")
                return Rendered(subject=subject, body=text.rstrip(), locale=loc, variant=variant)
        raise TemplateMissing(f"no template {name!r} for locale {locale!r} or {FALLBACK_LOCALE!r}")
