"""The four services of the CSAT platform."""
