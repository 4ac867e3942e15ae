"""The scorer's own Prometheus metrics (names fixed by the cross-branch contract)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SEGMENT_SCORE = Gauge(
    "csat_segment_score",
    "Score of a configured segment over a rolling window (CSAT %, NPS, CES mean ease)",
    ["metric", "window", "segment"],
)
SEGMENT_RESPONSES = Gauge(
    "csat_segment_responses",
    "Responses of a configured segment over a rolling window",
    ["metric", "window", "segment"],
)
VALUES_FOLDED = Counter(
    "csat_segment_values_folded_total",
    "Rating attributes counted under 'other' because their dimension reached its cap of distinct values",
    ["dimension"],
)
DIMENSIONS_DROPPED = Counter(
    "csat_segment_dimensions_dropped_total",
    "Rating attributes not counted per segment because the cap of distinct dimensions was reached",
)
SCORE_EVENTS = Counter(
    "csat_score_events_total",
    "Score-changed and segment-alert events published by the scorer, by event kind",
    ["kind"],
)
PRUNED_BUCKETS = Counter(
    "csat_scorer_pruned_buckets_total",
    "Counter buckets deleted by the retention job, by tier",
    ["tier"],
)
