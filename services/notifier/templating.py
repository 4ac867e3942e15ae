"""Template rendering (Jinja2): ``templates/<locale>/<name>.txt``, first line ``Subject: ...``. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, FileSystemLoader, TemplateNotFound

TEMPLATE_DIR = Path(__file__).parent / "templates"
FALLBACK_LOCALE = "en"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    body: str
    locale: str


class TemplateMissing(LookupError):
    pass


class Templates:
    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        # Plain-text messages: nothing is interpreted as HTML, so autoescape stays off.
        self._env = Environment(  # noqa: S701
            loader=FileSystemLoader(str(directory)),
            undefined=ChainableUndefined,
            keep_trailing_newline=False,
            trim_blocks=False,
        )

    def render(self, name: str, locale: str, context: dict[str, Any]) -> Rendered:
        """Render in the customer's locale, falling back to English."""
        for loc in dict.fromkeys([locale.split("-")[0].lower(), FALLBACK_LOCALE]):
            try:
                template = self._env.get_template(f"{loc}/{name}.txt")
            except TemplateNotFound:
                continue
            text = template.render(**context).strip("\n")
            subject = None
            first, _, rest = text.partition("\n")
            if first.startswith("Subject:"):
                subject = first[len("Subject:") :].strip()
                text = rest.lstrip("\n")
            return Rendered(subject=subject, body=text, locale=loc)
        raise TemplateMissing(f"no template {name!r} for locale {locale!r} or {FALLBACK_LOCALE!r}")
