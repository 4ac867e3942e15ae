"""Scorer settings (``CSAT_*``), validated at start-up."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, field_validator, model_validator

from services.scorer import domain
from services.scorer.segments import normalise_combinations
from services.scorer.windows import Tier, make_tiers
from shared.scales import Metric
from shared.settings import CommonSettings


class ScorerSettings(CommonSettings):
    port: int = 8001
    consumer_group: str = "csat-scorer"
    max_batch: int = Field(default=5000, ge=1, description="Records per micro-batch (one transaction)")
    min_sample: int = Field(default=30, ge=1, description="Below this many responses a score is insufficient")
    combinations: list[list[str]] = Field(
        default_factory=lambda: [["store", "channel"]],
        description="Segment combinations counted together, e.g. store x channel",
    )
    industry: str = Field(default="all", description="Benchmark to compare with (a key of INDUSTRY_CSAT)")

    # Segment cap: beyond it, new values fold into "other" (csat_segment_values_folded_total says so).
    max_values_per_dimension: int = Field(default=1000, ge=1)
    max_dimensions: int = Field(default=50, ge=1, description="Distinct attribute names with counters")

    # Counter tiers and windows.
    minute_retention_days: int = Field(default=35, ge=1, description="Minute buckets kept (exact edges)")
    hour_retention_days: int = Field(default=800, ge=1, description="Hour buckets kept")
    max_window_days: int = Field(default=800, ge=1, description="Longest window= the API accepts")
    year_ago_days: int = Field(default=364, ge=1, description="Shift of the year-ago comparison")
    prune_interval_s: float = Field(default=600.0, gt=0)

    # Score-changed and segment-alert events.
    event_windows: list[str] = Field(default_factory=lambda: ["24h", "7d", "30d"])
    score_event_interval_s: float = Field(
        default=30.0, gt=0, description="At most one score event per (segment, window) per interval"
    )
    score_event_min_delta: float = Field(default=0.0, ge=0, description="Smaller moves are not published")
    score_event_batch: int = Field(default=500, ge=1, description="Segments evaluated per query")
    alert_thresholds: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {"csat": {"default": 70.0}, "nps": {"default": 0.0}, "ces": {"default": 4.0}},
        description='Per metric: "default", a dimension ("store"), dimensions ("channel|store") or a key',
    )
    alert_alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance level of a drop")
    alert_min_responses: int | None = Field(
        default=None, ge=1, description="Both windows need this many answers for a drop test (min_sample)"
    )

    # Prometheus gauges for a bounded set of segments.
    gauge_segments: list[str] = Field(default_factory=lambda: [domain.GLOBAL_SEGMENT])
    gauge_interval_s: float = Field(default=15.0, gt=0)

    @field_validator("event_windows")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for window in value:
            domain.parse_window(window)
        return value

    @field_validator("gauge_segments")
    @classmethod
    def _gauge_segments(cls, value: list[str]) -> list[str]:
        """Accept keys (``store=paris-1``) or query form (``store:paris-1``); keep canonical keys."""
        out: list[str] = []
        for item in value:
            if item == domain.GLOBAL_SEGMENT or "=" in item:
                attrs = domain.parse_segment_key(item)
            else:
                attrs = domain.parse_segment_params(item.split(","))
            key = domain.segment_key(attrs)
            if key not in out:
                out.append(key)
        if len(out) > 100:
            raise ValueError("at most 100 gauge segments (each is a label set in Prometheus)")
        return out

    @field_validator("alert_thresholds")
    @classmethod
    def _thresholds(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for metric in value:
            Metric(metric)
        return value

    @model_validator(mode="after")
    def _retentions(self) -> ScorerSettings:
        if self.hour_retention_days < self.minute_retention_days:
            raise ValueError("CSAT_HOUR_RETENTION_DAYS must be >= CSAT_MINUTE_RETENTION_DAYS")
        return self

    @property
    def combos(self) -> list[tuple[str, ...]]:
        return normalise_combinations(self.combinations)

    @property
    def tiers(self) -> tuple[Tier, ...]:
        return make_tiers(
            minute_retention=timedelta(days=self.minute_retention_days),
            hour_retention=timedelta(days=self.hour_retention_days),
        )

    @property
    def max_window(self) -> timedelta:
        return timedelta(days=self.max_window_days)

    @property
    def drop_min_responses(self) -> int:
        return self.alert_min_responses or self.min_sample
