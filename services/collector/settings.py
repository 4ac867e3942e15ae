"""Collector settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class CollectorSettings(CommonSettings):
    port: int = 8000
    publish_timeout_s: float = Field(default=5.0, gt=0, description="Longest wait for the broker's ack")
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with 503")
    max_batch_items: int = Field(default=500, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_future_skew_s: int = Field(default=300, ge=0, description="How far in the future occurred_at may be")
