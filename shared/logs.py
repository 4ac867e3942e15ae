"""Structured logging with personal data scrubbed from every line (emails, phone numbers, tokens)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"(?<![\w.-])\+?\d[\d ().-]{7,}\d(?![\w-])")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _phone(match: re.Match[str]) -> str:
    """Phone-like runs of digits, but not IPv4 addresses, ISO dates or short numbers."""
    text = match.group(0)
    if _IPV4.match(text) or _DATE.match(text):
        return text
    digits = sum(c.isdigit() for c in text)
    return "[phone]" if digits >= 9 or (text.startswith("+") and digits >= 7) else text


_TOKEN = re.compile(r"(?i)\b(token|key|signature|sig|secret|password|authorization)=([^&\s\"']+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_LONG_SECRET = re.compile(r"\b[A-Za-z0-9_-]{32,}\.[A-Za-z0-9_-]{16,}(\.[A-Za-z0-9_-]+)?\b")

_SENSITIVE_KEYS = {"email", "phone", "token", "password", "secret", "authorization", "api_key", "comment"}
#: A statement's parameters as SQLAlchemy appends them to an error (engines hide them; an older engine or
#: another library may not), and a value asyncpg quotes when it cannot convert it.
_PARAMETERS = re.compile(r"\[parameters: .*?\](?=\s|\\|\"|'|$)", re.DOTALL)
_ARGUMENT = re.compile(r"(query argument \$\d+: )(?:'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\S+)")


def scrub(text: str) -> str:
    """Replace anything that looks like an email, a phone number, a credential or statement parameters."""
    text = _PARAMETERS.sub("[parameters: redacted]", text)
    text = _ARGUMENT.sub(lambda mt: f"{mt.group(1)}[redacted]", text)
    text = _EMAIL.sub("[email]", text)
    text = _TOKEN.sub(lambda mt: f"{mt.group(1)}=[redacted]", text)
    text = _BEARER.sub(lambda mt: f"{mt.group(1)} [redacted]", text)
    text = _LONG_SECRET.sub("[token]", text)
    return _PHONE.sub(_phone, text)


def _scrub_value(key: str, value: Any) -> Any:
    if key.lower() in _SENSITIVE_KEYS and value is not None:
        return "[redacted]"
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(key, v) for v in value]
    return value


def _scrub_processor(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _scrub_value(key, event_dict[key])
    return event_dict


class _ScrubbingFilter(logging.Filter):
    """Scrubs records of third-party loggers (uvicorn, aiokafka, sqlalchemy) that bypass structlog."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, dict):
            return True  # a structlog event, already scrubbed by the processor chain
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        record.msg = scrub(message)
        record.args = None
        return True


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_logging(*, service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Route stdlib and structlog output through one scrubbing pipeline on stderr."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared_processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _scrub_processor,
    ]
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ScrubbingFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _tidy_event,
                # A record's exception as its formatted traceback ("exception"), scrubbed with the
                # rest of the line below; without it JSON got the exc_info tuple's reprs, no stack.
                structlog.processors.format_exc_info,
                _add_service(service),
                _scrubbed(renderer),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn configures its own loggers when it starts, before it imports the app: a handler of
    # their own on "uvicorn" that does not propagate. Left so, an unhandled exception's traceback
    # ("Exception in ASGI application", with a driver's message quoting the value it refused) would
    # reach stderr past the scrubbing. Every uvicorn record goes through the root's pipeline instead.
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs whole URLs at INFO (tokens, emails in query strings); uvicorn's access log prints
    # query strings. Our own request log replaces the latter.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _scrubbed(renderer: Any) -> Any:
    """The rendered line scrubbed once more: tracebacks (``exc_info``) are formatted by the renderer,
    after the event's fields were scrubbed, and a driver's message can quote the value it refused."""

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> Any:
        out = renderer(logger, name, event_dict)
        return scrub(out) if isinstance(out, str) else out

    return render


def _tidy_event(_l: Any, _n: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Third-party messages without their trailing newline (uvicorn ends some with one)."""
    event = event_dict.get("event")
    if isinstance(event, str):
        event_dict["event"] = event.rstrip()
    return event_dict


def _add_service(service: str) -> Any:
    def processor(_l: Any, _n: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict.setdefault("service", service)
        return event_dict

    return processor
