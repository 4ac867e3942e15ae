"""Real infrastructure for tests: one fresh broker and PostgreSQL per session, a database and topics per test.

``CSAT_TEST_KAFKA_BOOTSTRAP`` / ``CSAT_TEST_DATABASE_URL`` point the suite at servers that already run;
otherwise the embedded ones are started. A failure to start is an error, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from devstack.broker import EmbeddedBroker
from devstack.postgres import EmbeddedPostgres
from shared.provisioning import create_topics, run_migrations
from shared.topics import Topics

TEMPLATE_DB = "csat_template"


@dataclass
class Infra:
    bootstrap: str
    server_url: str  # postgresql://user@host:port (no database)
    broker: EmbeddedBroker | None
    postgres: EmbeddedPostgres | None

    def db_url(self, name: str) -> str:
        return f"{self.server_url}/{name}"


def _server_url(url: str) -> str:
    base = url.replace("postgresql+asyncpg://", "postgresql://")
    return base.rsplit("/", 1)[0]


async def _admin(server_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(f"{server_url}/postgres")
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def start_infra(tmp: Path) -> Iterator[Infra]:
    broker = postgres = None
    bootstrap = os.environ.get("CSAT_TEST_KAFKA_BOOTSTRAP")
    db_url = os.environ.get("CSAT_TEST_DATABASE_URL")
    try:
        if not bootstrap:
            broker = EmbeddedBroker(port=None, log_path=tmp / "broker.log")
            broker.port = _free()
            bootstrap = broker.start()
        if not db_url:
            # Not under pytest's basetemp: every new pytest session (of anyone on this machine, all
            # root) resets /tmp/pytest-of-<user> to 0700, which locks the server's user out of its
            # data directory and makes a running PostgreSQL panic.
            pg_dir = Path(tempfile.mkdtemp(prefix="csat-test-pg-"))
            postgres = EmbeddedPostgres(
                data_dir=pg_dir / "pg", port=_free(), durable=False, database="postgres"
            )
            db_url = postgres.start()
        server = _server_url(db_url)
        asyncio.run(
            _admin(server, f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"', f'CREATE DATABASE "{TEMPLATE_DB}"')
        )
        run_migrations(f"{server}/{TEMPLATE_DB}")
        yield Infra(bootstrap=bootstrap, server_url=server, broker=broker, postgres=postgres)
    finally:
        if postgres is not None:
            postgres.stop()
            shutil.rmtree(postgres.data_dir.parent, ignore_errors=True)
        if broker is not None:
            broker.stop()


def _free() -> int:
    from devstack.ports import free_port

    return free_port()


def new_database(infra: Infra) -> str:
    """A migrated database of its own for one test (a copy of the migrated template)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(infra.server_url, f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"'))
    return name


def drop_database(infra: Infra, name: str) -> None:
    asyncio.run(_admin(infra.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def new_topics(infra: Infra, *, partitions: int = 3) -> Topics:
    topics = Topics(prefix=f"t{uuid.uuid4().hex[:10]}.")
    create_topics(infra.bootstrap, topics, partitions=partitions)
    return topics
