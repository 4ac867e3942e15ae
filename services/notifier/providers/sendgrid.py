"""SendGrid v3 Mail Send (POST /v3/mail/send): 202 accepted, X-Message-Id header, JSON errors."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notifier.providers import Message, SendResult


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class SendGridProvider:
    name = "sendgrid"
    idempotent = False

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        from_email: str,
        from_name: str,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._from = {"email": from_email, "name": from_name}
        self._client = client or httpx.AsyncClient(
            base_url=base_url, timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"}
        )

    def payload(self, message: Message) -> dict[str, object]:
        body: dict[str, object] = {
            "personalizations": [{"to": [{"email": message.to}]}],
            "from": self._from,
            "subject": message.subject or "",
            "content": [{"type": "text/plain", "value": message.body}],
            "custom_args": {"notification_id": message.notification_id},
        }
        if message.headers:
            body["headers"] = dict(message.headers)
        return body

    async def send(self, message: Message, *, conn: AsyncConnection) -> SendResult:
        try:
            response = await self._client.post("/v3/mail/send", json=self.payload(message))
        except httpx.TimeoutException:
            return SendResult(accepted=False, retryable=True, detail="timeout (outcome unknown)")
        except httpx.TransportError as exc:
            return SendResult(accepted=False, retryable=True, detail=f"transport error: {type(exc).__name__}")
        if response.status_code == 202:
            return SendResult(accepted=True, provider_message_id=response.headers.get("X-Message-Id"))
        detail = _error_text(response)
        if response.status_code == 429:
            return SendResult(
                accepted=False,
                retryable=True,
                retry_after_s=_retry_after(response),
                detail="429 rate limited",
            )
        if response.status_code >= 500:
            return SendResult(accepted=False, retryable=True, detail=f"{response.status_code} {detail}")
        return SendResult(accepted=False, retryable=False, detail=f"{response.status_code} {detail}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_text(response: httpx.Response) -> str:
    try:
        errors = response.json().get("errors") or []
        return "; ".join(str(e.get("message", "")) for e in errors)[:300]
    except ValueError:
        return response.text[:300]
