"""Text every service accepts: no NUL (PostgreSQL refuses it) and no unpaired surrogate (not UTF-8).

Both reached the database unchecked and came back as 500s with the statement's parameters in the log.
``SafeText`` / ``SafeLine`` are pydantic types whose error names the field; ``text_problem`` and
``json_text_problem`` answer the same question for query strings, headers and free-form JSON.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LINE_CONTROL = re.compile("[\x00-\x1f\x7f]")


def text_problem(value: str, *, single_line: bool = False) -> str | None:
    """Why ``value`` is refused (without the field's name), or None when it is acceptable.

    A decoded Python string holds a surrogate code point only when it was unpaired in the input (a
    valid pair decodes to one character beyond U+FFFF), so any surrogate left is refused.
    """
    if "\x00" in value:
        return "must not contain a NUL character (U+0000)"
    found = _SURROGATE.search(value)
    if found is not None:
        return f"must not contain an unpaired surrogate (U+{ord(found.group()):04X})"
    controls = _LINE_CONTROL if single_line else _CONTROL
    found = controls.search(value)
    if found is not None:
        return f"must not contain the control character U+{ord(found.group()):04X}"
    return None


def json_text_problem(value: Any, *, path: str = "") -> str | None:
    """The first string (key or value) of a JSON-like value that ``text_problem`` refuses, with its path.

    Returns e.g. ``"attributes.plan[2] must not contain a NUL character (U+0000)"``.
    """
    found = json_text_field(value, path=path)
    if found is None:
        return None
    field, why, is_key = found
    return f"a key of {field} {why}" if is_key else f"{field} {why}"


def json_text_field(value: Any, *, path: str = "") -> tuple[str, str, bool] | None:
    """``(field, reason, is_key)`` of the first refused string of a JSON-like value, or None.

    ``field`` is the path of the value (or, for a refused key, of the object holding it), ``value`` at
    the top."""
    if isinstance(value, str):
        why = text_problem(value)
        return (path or "value", why, False) if why else None
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            why = text_problem(key_text, single_line=True)
            if why:
                return (path or "value", why, True)
            found = json_text_field(item, path=f"{path}.{key_text}" if path else key_text)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = json_text_field(item, path=f"{path}[{index}]")
            if found:
                return found
    return None


def _field(info: ValidationInfo) -> str:
    return info.field_name or "text"


def _safe_text(value: str, info: ValidationInfo) -> str:
    why = text_problem(value)
    if why:
        raise ValueError(f"{_field(info)} {why}")
    return value


def _safe_line(value: str, info: ValidationInfo) -> str:
    why = text_problem(value, single_line=True)
    if why:
        raise ValueError(f"{_field(info)} {why}")
    return value


def _safe_json(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    why = json_text_problem(value, path=_field(info))
    if why:
        raise ValueError(why)
    return value


#: Free text (comments, notes): tabs and line breaks allowed, other control characters refused.
SafeText = Annotated[str, AfterValidator(_safe_text)]
#: One-line text (ids, names, query parameters): every control character refused.
SafeLine = Annotated[str, AfterValidator(_safe_line)]
#: A free-form JSON object whose keys and string values, at any depth, pass ``SafeText``'s rules.
SafeJsonObject = Annotated[dict[str, Any], AfterValidator(_safe_json)]
