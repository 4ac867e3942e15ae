"""W3C Trace Context (``traceparent``) carried from an HTTP request through every Kafka hop.

The collector continues an incoming ``traceparent`` header (or starts a trace) for each request; the
CloudEvents distributed-tracing extension puts it on every record as the ``traceparent`` attribute,
which Kafka binary mode sends as the ``ce_traceparent`` header. A consumer continues the trace of the
record it handles (same trace id, new span id), so a notification outcome carries the trace id of the
rating that caused it. Log lines written while a span is current carry ``trace_id`` and ``span_id``.

Pure code: no I/O, only ``contextvars`` and structlog's context binding.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import structlog

#: The CloudEvents extension attribute (and, prefixed with ``ce_``, the Kafka header).
ATTRIBUTE = "traceparent"
HEADER = "traceparent"

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class SpanContext:
    """One span's identity: the trace it belongs to, its own id and the sampling flags."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> SpanContext:
        """A new span in the same trace (what a service does when it continues a trace)."""
        return SpanContext(trace_id=self.trace_id, span_id=new_span_id(), flags=self.flags)


def new_span_id() -> str:
    return secrets.token_hex(8)


def new_trace() -> SpanContext:
    """Start a trace (sampled) when nobody upstream sent one."""
    return SpanContext(trace_id=secrets.token_hex(16), span_id=new_span_id(), flags="01")


def parse(value: str | bytes | None) -> SpanContext | None:
    """Parse a ``traceparent`` value; None for anything the W3C spec says to ignore."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    found = _TRACEPARENT.match(text.strip().lower())
    if found is None:
        return None
    version, trace_id, span_id, flags, rest = found.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and rest:
        return None  # version 00 has exactly four fields
    return SpanContext(trace_id=trace_id, span_id=span_id, flags=flags)


def continue_from(value: str | bytes | None) -> SpanContext:
    """The span for work caused by ``value``: a child of it, or a new trace if it is absent or invalid."""
    parent = parse(value)
    return parent.child() if parent is not None else new_trace()


_current: ContextVar[SpanContext | None] = ContextVar("csat_span", default=None)


def current() -> SpanContext | None:
    """The span the running code belongs to, if any."""
    return _current.get()


class span:  # lower case: used as ``with span(ctx):``, like the function it replaced
    """Make ``ctx`` current (records encoded meanwhile carry it) and tag log lines with its ids.

    A class rather than a generator context manager, and the log ids reset by their tokens rather than
    through structlog's ``bound_contextvars`` (which copies the whole context): it runs per request.
    """

    __slots__ = ("_ctx", "_logged", "_token")

    def __init__(self, ctx: SpanContext) -> None:
        self._ctx = ctx

    def __enter__(self) -> SpanContext:
        ctx = self._ctx
        self._token = _current.set(ctx)
        self._logged = structlog.contextvars.bind_contextvars(trace_id=ctx.trace_id, span_id=ctx.span_id)
        return ctx

    def __exit__(self, *exc: object) -> None:
        structlog.contextvars.reset_contextvars(**self._logged)
        _current.reset(self._token)


_batch: ContextVar[Mapping[int, Mapping[str, Any]] | None] = ContextVar("csat_batch_traces", default=None)


@contextlib.contextmanager
def batch(extensions_by_data: Mapping[int, Mapping[str, Any]]) -> Iterator[None]:
    """Scope of one consumer batch: what ``follow`` looks up, and the span and log ids restored after.

    Keys are ``id()`` of each decoded event's ``data`` object (alive for the whole batch), values its
    CloudEvents extensions. The consumer loop opens this around its handler.
    """
    batch_token = _batch.set(extensions_by_data)
    span_token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(span_token)
        _batch.reset(batch_token)
        structlog.contextvars.unbind_contextvars("trace_id", "span_id")


def follow(data: object) -> SpanContext:
    """From here to the end of the batch, work belongs to the trace of the event whose payload is ``data``.

    A handler calls it at the top of its per-event loop: records it encodes afterwards continue that
    event's trace (same trace id, new span id) and its log lines carry ``trace_id``.
    """
    known = _batch.get() or {}
    value = known.get(id(data), {}).get(ATTRIBUTE)
    ctx = continue_from(value if isinstance(value, str | bytes) else None)
    _current.set(ctx)
    structlog.contextvars.bind_contextvars(trace_id=ctx.trace_id, span_id=ctx.span_id)
    return ctx


@contextlib.contextmanager
def continued(extensions: Mapping[str, Any] | None) -> Iterator[SpanContext]:
    """Continue the trace of a consumed event (its CloudEvents extensions), or start one."""
    value = extensions.get(ATTRIBUTE) if extensions else None
    with span(continue_from(value if isinstance(value, str | bytes) else None)) as ctx:
        yield ctx
