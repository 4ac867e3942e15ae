"""Scorer: stores each rating once and keeps exact rolling CSAT, NPS and CES per segment."""
