"""Is an HTML email safe for mail clients? A pure checker run on every survey email we render.

Mail clients (Gmail, Outlook's Word engine, Apple Mail, webmails) strip or mangle much of the web: no
script runs, ``<style>`` and linked stylesheets are dropped or rewritten, forms and embedded media do not
work, CSS positioning, floats, flexbox and grid are ignored, images are blocked until the reader allows
them, and Gmail clips messages over 102 KB. The rules below keep to what renders everywhere; each
violation names its rule so a failing test says what to fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

#: Gmail clips a message's HTML beyond this many bytes ("[Message clipped]"), hiding the buttons.
MAX_BYTES = 102 * 1024

FORBIDDEN_ELEMENTS = frozenset(
    {
        "script",
        "noscript",
        "style",
        "link",
        "iframe",
        "frame",
        "object",
        "embed",
        "applet",
        "form",
        "input",
        "button",
        "select",
        "textarea",
        "video",
        "audio",
        "svg",
        "canvas",
        "base",
        "div",
    }
)
#: CSS that mail clients ignore or strip: the layout would fall apart silently.
_UNSAFE_CSS = re.compile(
    r"(^|;)\s*(position|float|animation|transition|behavior)\s*:|display\s*:\s*(flex|grid|inline-flex)|"
    r"url\(|expression\(|@import",
    re.IGNORECASE,
)
_SAFE_URL = re.compile(r"^(https://|mailto:)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


class _Scanner(HTMLParser):
    def __init__(self, *, allow_http: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.allow_http = allow_http
        self.found: list[Violation] = []
        self.doctype = False
        self.lang = False
        self.charset = False
        self.tables = 0
        self._anchor_text: list[str] | None = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = self.doctype or decl.lower().startswith("doctype html")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): value or "" for name, value in attrs}
        self._element(tag, values)
        for name, value in values.items():
            self._attribute(tag, name, value)
        if tag == "a":
            self._anchor_text = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._anchor_text is not None:
            if not "".join(self._anchor_text).strip():
                self.found.append(Violation("link-text", "a link without visible text"))
            self._anchor_text = None

    def handle_data(self, data: str) -> None:
        if self._anchor_text is not None:
            self._anchor_text.append(data)

    def _element(self, tag: str, values: dict[str, str]) -> None:
        if tag in FORBIDDEN_ELEMENTS:
            self.found.append(Violation("forbidden-element", f"<{tag}>"))
        if tag == "html":
            self.lang = bool(values.get("lang", "").strip())
        if tag == "meta" and ("charset" in values or "content-type" in values.get("http-equiv", "").lower()):
            self.charset = True
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.found.append(Violation("forbidden-element", "<meta http-equiv=refresh>"))
        if tag == "table":
            self.tables += 1
            if values.get("role") != "presentation":
                self.found.append(Violation("layout-table", "a table without role=presentation"))
        if tag == "img":
            if not values.get("alt", "").strip():
                self.found.append(Violation("img-alt", f"image {values.get('src', '?')} without alt text"))
            if not values.get("width") or not values.get("height"):
                self.found.append(
                    Violation("img-size", f"image {values.get('src', '?')} without width/height")
                )

    def _attribute(self, tag: str, name: str, value: str) -> None:
        if name.startswith("on"):
            self.found.append(Violation("event-handler", f"<{tag} {name}>"))
        elif name in ("href", "src", "background", "action"):
            ok = _SAFE_URL.match(value) or (self.allow_http and value.lower().startswith("http://"))
            if not ok:
                self.found.append(Violation("url-scheme", f"<{tag} {name}={value[:60]!r}>"))
        elif name == "style" and _UNSAFE_CSS.search(value):
            self.found.append(Violation("css", f"<{tag} style={value[:80]!r}>"))
        elif name == "class":
            self.found.append(Violation("css", f"<{tag} class>: no stylesheet reaches it; style inline"))


def check(html: str, *, allow_http: bool = False) -> list[Violation]:
    """Every rule the HTML breaks (empty when it is mail-client safe); ``allow_http`` for local runs."""
    scanner = _Scanner(allow_http=allow_http)
    scanner.feed(html)
    scanner.close()
    found = list(scanner.found)
    if not scanner.doctype:
        found.append(Violation("doctype", "no <!DOCTYPE html>"))
    if not scanner.lang:
        found.append(Violation("lang", "<html> has no lang"))
    if not scanner.charset:
        found.append(Violation("charset", "no <meta charset>"))
    if scanner.tables == 0:
        found.append(Violation("layout-table", "no table: mail clients lay out tables, not CSS"))
    size = len(html.encode())
    if size > MAX_BYTES:
        found.append(Violation("size", f"{size} bytes; Gmail clips beyond {MAX_BYTES}"))
    return found
