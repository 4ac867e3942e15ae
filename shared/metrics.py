"""Prometheus metrics shared by every consumer, named by Prometheus conventions (prefix, units, _total)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONSUMER_RECORDS = Counter(
    "csat_consumer_records_total",
    "Records handled by a consumer, by outcome (processed, skipped as already done, dead_lettered)",
    ["consumer", "outcome"],
)
CONSUMER_BATCH_SECONDS = Histogram(
    "csat_consumer_batch_duration_seconds",
    "Time to process one micro-batch including its database transaction",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CONSUMER_BATCH_SIZE = Histogram(
    "csat_consumer_batch_records",
    "Records per micro-batch",
    ["consumer"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
CONSUMER_LAG = Gauge(
    "csat_consumer_lag_records",
    "Records between a partition's high watermark and the consumer's position",
    ["consumer", "topic", "partition"],
)
CONSUMER_ERRORS = Counter(
    "csat_consumer_errors_total",
    "Errors met by a consumer loop, by kind (database, broker, handler)",
    ["consumer", "kind"],
)
DLQ_RECORDS = Counter(
    "csat_dlq_records_total",
    "Records sent to a dead-letter topic, by consumer and reason kind",
    ["consumer", "reason"],
)
EVENT_PROCESSING_LATENCY = Histogram(
    "csat_event_processing_latency_seconds",
    "Time from an event's CloudEvents time to the end of its processing",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
