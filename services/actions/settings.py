"""Actions settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from shared.settings import CommonSettings

DEFAULT_RULES = Path(__file__).parent / "rules" / "default.yaml"


class ActionsSettings(CommonSettings):
    port: int = 8002
    consumer_group: str = "csat-actions"
    max_batch: int = Field(default=500, ge=1)
    rules_file: Path = DEFAULT_RULES
    default_csm_email: str = Field(default="csm@example.com", description="CSM alerts when no owner is known")
    default_locale: str = "en"
