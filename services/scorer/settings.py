"""Scorer settings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings


class ScorerSettings(CommonSettings):
    port: int = 8001
    consumer_group: str = "csat-scorer"
    max_batch: int = Field(default=2000, ge=1)
    min_sample: int = Field(default=30, ge=1, description="Below this many responses a score is insufficient")
    combinations: list[list[str]] = Field(
        default_factory=lambda: [["store", "channel"]],
        description="Segment combinations counted together, e.g. store x channel",
    )
    industry: str = Field(default="all", description="Benchmark to compare with (see PRODUCT.md)")
