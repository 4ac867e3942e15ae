"""Scorer settings (``CSAT_*``), validated at start-up."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from services.scorer import domain, responses
from services.scorer.drift import DriftSettings
from services.scorer.segments import normalise_combinations
from services.scorer.windows import Tier, make_tiers
from shared.identity.config import IdentitySettings, SecretCheck, refuse_weak_secrets
from shared.scales import Metric
from shared.settings import DEV_SECRETS, CommonSettings
from shared.verbatims import DEFAULT_THEMES


class ScorerSettings(CommonSettings, IdentitySettings):
    port: int = 8001
    consumer_group: str = "csat-scorer"
    # 20,000 rather than 5,000: a batch takes what has arrived, so live traffic keeps small batches, while
    # a backfill or catch-up adds a whole batch's ratings to each hour and day row (and each busy minute
    # row) in one upsert instead of four: a third fewer counter rows written per rating (docs/scores.md).
    max_batch: int = Field(default=20_000, ge=1, description="Records per micro-batch (one transaction)")
    fetch_partition_bytes: int = Field(
        default=8 * 1_048_576,
        ge=65_536,
        description="Bytes one fetch may bring per partition: a batch holds at most what the fetcher has, "
        "so big catch-up batches need more than aiokafka's 1 MiB (docs/scores.md, Throughput)",
    )
    counter_write: Literal["statement", "composite", "copy"] = Field(
        default="statement",
        description="How a batch's counters reach PostgreSQL: counted in the batch statement, or added up "
        "in memory per counter row and sent as one composite array or by COPY (docs/scores.md)",
    )
    min_batch_interval_ms: int = Field(
        default=100,
        ge=0,
        description="Least time between two batches' starts: under load a batch takes what arrived meanwhile "
        "(scores are read seconds later; fewer, bigger transactions leave the CPU to the alert path)",
    )
    min_sample: int = Field(default=30, ge=1, description="Below this many responses a score is insufficient")
    low_response_rate: float = Field(
        default=responses.LOW_RESPONSE_RATE,
        ge=0,
        le=1,
        description="Below this survey response rate a segment is flagged low_response (docs/scores.md)",
    )
    low_response_min_invited: int = Field(
        default=responses.MIN_INVITED, ge=1, description="...on at least this many invitations"
    )
    combinations: list[list[str]] = Field(
        default_factory=lambda: [["store", "channel"]],
        description="Segment combinations counted together, e.g. store x channel",
    )
    industry: str = Field(default="all", description="Benchmark to compare with (a key of INDUSTRY_CSAT)")
    themes_file: Path = Field(
        default=DEFAULT_THEMES, description="Verbatim theme taxonomy (as actions reads)"
    )
    verbatims_scan_limit: int = Field(
        default=5000, ge=100, le=100_000, description="Newest comments GET /v1/verbatims tags per range"
    )

    # Segment cap: beyond it, new values fold into "other" (csat_segment_values_folded_total says so).
    max_values_per_dimension: int = Field(default=1000, ge=1)
    max_dimensions: int = Field(default=50, ge=1, description="Distinct attribute names with counters")

    # Counter tiers and windows.
    minute_retention_days: int = Field(default=35, ge=1, description="Minute buckets kept (exact edges)")
    hour_retention_days: int = Field(default=800, ge=1, description="Hour buckets kept")
    max_window_days: int = Field(default=800, ge=1, description="Longest window= the API accepts")
    year_ago_days: int = Field(default=364, ge=1, description="Shift of the year-ago comparison")
    prune_interval_s: float = Field(default=600.0, gt=0)
    breakdown_cache_s: float = Field(
        default=30.0,
        ge=0,
        description="A breakdown's whole ranking is reused this long (paging through it); 0: never",
    )

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
    alert_alpha: float = Field(
        default=0.05, gt=0, lt=1, description="Significance level of the scores API's one-look drop test"
    )

    # Drift alerts (services/scorer/drift.py; docs/scores.md, "Drift alerts").
    drift_enabled: bool = Field(default=True, description="Judge each closed day and alert on real drops")
    drift_months_per_false_alarm: float = Field(
        default=120.0, gt=0, description="At most one false alarm per segment per this many months"
    )
    drift_min_drop: dict[str, float] = Field(
        default_factory=lambda: {"csat": 10.0, "nps": 10.0, "ces": 0.5},
        description="Per metric, the smallest drop worth an alert (CSAT/NPS points, CES points of ease)",
    )
    drift_max_drop: dict[str, float] = Field(
        default_factory=lambda: {"csat": 30.0, "nps": 40.0, "ces": 1.5},
        description="Per metric, the largest drop a small segment may watch instead (larger: nothing)",
    )
    drift_max_delay_days: float = Field(
        default=28.0, gt=0, description="A watched drop is confirmed within this many days on average"
    )
    drift_baseline_days: int = Field(default=91, ge=1, description="The segment's usual level: days...")
    drift_lag_days: int = Field(default=28, ge=0, description="...ending this many days before the day")
    drift_min_baseline_days: int = Field(
        default=28, ge=1, description="After a detected drop, its new level is learnt this long first"
    )
    drift_grace_minutes: float = Field(
        default=60.0, ge=0, description="A UTC day is judged this long after midnight (late answers)"
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

    @field_validator("drift_min_drop", "drift_max_drop")
    @classmethod
    def _drops(cls, value: dict[str, float]) -> dict[str, float]:
        for metric in value:
            Metric(metric)
        return value

    @model_validator(mode="after")
    def _retentions(self) -> ScorerSettings:
        if self.hour_retention_days < self.minute_retention_days:
            raise ValueError("CSAT_HOUR_RETENTION_DAYS must be >= CSAT_MINUTE_RETENTION_DAYS")
        return self

    @model_validator(mode="after")
    def _prod_secrets(self) -> ScorerSettings:
        refuse_weak_secrets(environment=self.environment, checks=self.secret_checks())
        return self

    def secret_checks(self) -> list[SecretCheck]:
        """Every secret prod refuses missing, public or weak, named in one message."""
        return self.identity_secret_checks(public_values=DEV_SECRETS)

    @model_validator(mode="after")
    def _drift_settings(self) -> ScorerSettings:
        self.drift  # noqa: B018 - built once at start-up so a wrong CSAT_DRIFT_* fails there
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
    def drift(self) -> DriftSettings:
        """The detector's settings; a metric missing from the CSAT_DRIFT_*_DROP maps keeps its default."""
        defaults = DriftSettings()
        return DriftSettings(
            months_per_false_alarm=self.drift_months_per_false_alarm,
            min_drop={m: self.drift_min_drop.get(m.value, defaults.min_drop[m]) for m in Metric},
            max_drop={m: self.drift_max_drop.get(m.value, defaults.max_drop[m]) for m in Metric},
            max_delay_days=self.drift_max_delay_days,
            baseline_days=self.drift_baseline_days,
            lag_days=self.drift_lag_days,
            min_baseline_days=self.drift_min_baseline_days,
        )

    @property
    def drift_grace(self) -> timedelta:
        return timedelta(minutes=self.drift_grace_minutes)

    @property
    def response_settings(self) -> responses.ResponseSettings:
        return responses.ResponseSettings(
            threshold=self.low_response_rate, min_invited=self.low_response_min_invited
        )
