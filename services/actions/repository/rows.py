"""How rows leave the database for the API."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any


def jsonable(row: Mapping[Any, Any]) -> dict[str, Any]:
    """A row as the API answers it: timestamps in ISO 8601."""
    return {str(k): (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
