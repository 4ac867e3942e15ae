"""Published CSAT benchmarks by industry (ACSI and published averages); `all` is the all-industry average."""

from __future__ import annotations

INDUSTRY_CSAT: dict[str, float] = {
    "all": 77.0,
    "ecommerce": 80.0,
    "saas": 78.0,
    "banks": 78.0,
    "travel": 76.0,
    "healthcare": 76.0,
    "airlines": 76.0,
    "streaming": 77.0,
    "fast_food": 78.0,
    "social_media": 73.0,
    "isp": 68.0,
}


def benchmark_for(industry: str) -> dict[str, object]:
    key = industry if industry in INDUSTRY_CSAT else "all"
    return {"industry": key, "csat": INDUSTRY_CSAT[key]}


def benchmark_value(industry: str) -> float:
    return INDUSTRY_CSAT.get(industry, INDUSTRY_CSAT["all"])
