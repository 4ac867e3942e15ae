"""Dev-stack provisioning: the `demo` source behind the widget demo page, with a fresh key per start."""

from __future__ import annotations

from datetime import UTC, datetime

from services.collector.ports import Source
from services.collector.repository import PgStore
from shared.db import make_engine
from shared.events import KeyKind
from shared.identity.sourcekeys import SourceKeyKind, generate_source_key

DEMO_SOURCE = "demo"


async def ensure_demo_source(database_url: str, *, origins: list[str]) -> str:
    """Create or refresh the demo source; returns a new publishable key (older demo keys stop working)."""
    engine = make_engine(database_url, pool_size=1, application_name="csat-devstack")
    store = PgStore(engine=engine, timeout_s=10)
    try:
        if await store.get_source(source_id=DEMO_SOURCE) is None:
            await store.create_source(
                source=Source(source_id=DEMO_SOURCE, name="Widget demo page", allowed_origins=tuple(origins))
            )
        else:
            await store.update_source(
                source_id=DEMO_SOURCE, changes={"allowed_origins": origins, "disabled": False}
            )
        key = generate_source_key(SourceKeyKind.PUBLISHABLE)
        await store.add_key(
            source_id=DEMO_SOURCE,
            key_id=key.key_id,
            key_hash=key.key_hash,
            kind=KeyKind.PUBLISHABLE,
            expire_others_at=datetime.now(UTC),
        )
        return key.secret
    finally:
        await store.close()
