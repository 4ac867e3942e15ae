"""Ids placed into URLs are percent-encoded, whole: ``a/b?c`` must not become a path and a query."""

from __future__ import annotations

import string
from collections.abc import Mapping
from urllib.parse import quote


def quote_id(value: str) -> str:
    """One path segment or query value: every character outside RFC 3986's unreserved set is encoded."""
    return quote(value, safe="")


class TemplateError(ValueError):
    """A URL template names a placeholder it was not given, or uses formatting it must not."""


def fill_url_template(template: str, values: Mapping[str, str]) -> str:
    """``https://x/s/{survey_id}?c={customer_id}`` with each value percent-encoded.

    Only plain ``{name}`` placeholders are accepted (no attribute access, index or format spec), so an
    operator's template cannot reach anything but the values given.
    """
    out: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise TemplateError(f"placeholder {{{name}}} must be a plain name")
        if name not in values:
            raise TemplateError(f"placeholder {{{name}}} has no value (known: {', '.join(sorted(values))})")
        out.append(quote_id(values[name]))
    return "".join(out)
