"""The notifier's Prometheus metrics; the alert rules and dashboard in deploy/k8s query them by name."""

from __future__ import annotations

from prometheus_client import Counter

NOTIFICATIONS = Counter(
    "csat_notifications_total",
    "Notifications handled, by channel, provider and outcome "
    "(sent, failed, suppressed, unknown, deferred, duplicate)",
    ["channel", "provider", "outcome"],
)
PROVIDER_ATTEMPTS = Counter(
    "csat_provider_attempts_total",
    "Calls to a provider, by provider and result (accepted, rate_limited, server_error, network_error, "
    "timeout_after_send, rejected, recipient_opted_out)",
    ["provider", "result"],
)
RECONCILED = Counter(
    "csat_notifier_reconciled_total",
    "Lookups of 'unknown' deliveries at their provider, by provider and result (found: recorded sent; "
    "absent: first look; absent_confirmed: sent again, or failed without attempts left; cannot_tell)",
    ["provider", "result"],
)
