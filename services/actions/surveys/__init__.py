"""Surveys after interactions: definitions (what to ask, when, how), decisions and measures. Pure code."""
