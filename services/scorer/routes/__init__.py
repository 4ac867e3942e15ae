"""The scorer's HTTP routes by audience: ``scores`` (dashboards, other tools), ``customers`` (CSMs)."""
