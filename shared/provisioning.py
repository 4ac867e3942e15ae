"""Bring a database and a broker to what this release expects: schema at head, every topic there.

One home for `csat migrate` / `csat topics`, `make run` and the tests' infrastructure, so all three
provision exactly alike.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from shared.kafka import TopicSpec, ensure_topics
from shared.topics import Topics

# The checkout (or /app in the image): alembic.ini, migrations/ and contracts/ sit at its top.
ROOT = Path(__file__).resolve().parents[1]


def run_migrations(database_url: str) -> None:
    """``alembic upgrade heads`` against ``database_url`` (synchronous; call outside an event loop)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(cfg, "heads")


def create_topics(bootstrap: str, topics: Topics, *, partitions: int = 6) -> list[str]:
    """Create every topic of ``topics`` that is missing (synchronous); return the names created."""
    specs = [TopicSpec(name, partitions=partitions) for name in topics.all()]
    return asyncio.run(ensure_topics(bootstrap=bootstrap, specs=specs))
