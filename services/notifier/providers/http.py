"""What every HTTP adapter shares: one POST, and sorting its outcome into a ``Verdict``.

- A response with 429 (any provider) or 408: not processed; retry, honouring ``Retry-After``.
- A 5xx response: the provider answered that it failed and documents retrying (SendGrid, Mailgun,
  Postmark, Twilio, Slack); treated as not accepted.
- No connection, connect or pool timeout, write error: the request never reached the provider whole.
- Read timeout, connection dropped after the request was written: the provider may have accepted it
  (AMBIGUOUS); the dispatcher only resends where the provider dedupes.
- Any other 4xx: rejected.
"""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime
from typing import Any

import httpx

from services.notifier.providers import SendResult, Verdict
from shared.security.outbound import GuardedTransport
from shared.security.ssrf import OutboundPolicy, OutboundRefused

USER_AGENT = "csat-notifier/1.0"

_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteTimeout,
    httpx.WriteError,
)
_MAYBE_SENT = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def client(*, base_url: str = "", timeout_s: float, **kwargs: Any) -> httpx.AsyncClient:
    """A client whose every phase (connect, write, read, pool) is bounded by ``timeout_s``."""
    headers = {"User-Agent": USER_AGENT, **kwargs.pop("headers", {})}
    return httpx.AsyncClient(
        base_url=base_url, timeout=httpx.Timeout(timeout_s), headers=headers, follow_redirects=False, **kwargs
    )


def guarded(*, policy: OutboundPolicy, timeout_s: float) -> httpx.AsyncClient:
    """``client`` for URLs admins set (Slack, webhooks): it connects only to addresses the outbound guard
    approved at connection time (no internal address unless allow-listed, no redirect followed)."""
    return client(timeout_s=timeout_s, transport=GuardedTransport(policy=policy), trust_env=False)


async def post(http: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response | SendResult:
    """POST once; a transport failure comes back as a SendResult saying whether the request left."""
    try:
        return await http.post(url, **kwargs)
    except OutboundRefused as exc:
        # Nothing left: the guard refused before connecting. Retrying would be refused again.
        return SendResult(Verdict.REJECTED, "rejected", detail=f"refused by the outbound URL guard: {exc}")
    except _NOT_SENT as exc:
        return SendResult(Verdict.RETRY, "network_error", detail=f"not sent: {type(exc).__name__}")
    except _MAYBE_SENT as exc:
        return SendResult(
            Verdict.AMBIGUOUS, "timeout_after_send", detail=f"no answer after sending: {type(exc).__name__}"
        )
    except httpx.TransportError as exc:
        return SendResult(Verdict.AMBIGUOUS, "timeout_after_send", detail=f"transport: {type(exc).__name__}")


def retry_after(response: httpx.Response, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds, from either form RFC 9110 allows (delta-seconds or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def failure(response: httpx.Response, detail: str) -> SendResult:
    """The generic reading of a non-success status."""
    status = response.status_code
    text = f"{status} {detail}".strip()[:300]
    if status in (408, 429):
        kind = "rate_limited" if status == 429 else "server_error"
        return SendResult(Verdict.RETRY, kind, retry_after_s=retry_after(response), detail=text)
    if status >= 500:
        return SendResult(Verdict.RETRY, "server_error", retry_after_s=retry_after(response), detail=text)
    return SendResult(Verdict.REJECTED, "rejected", detail=text)


def json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
