"""``csat retention <service>``: one retention run now, with that service's settings (a CronJob's
alternative to the nightly in-process run; both are idempotent)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from shared.db import make_engine
from shared.retention import Cutoffs, Purge, purge_once
from shared.settings import CommonSettings

RETAINING = ("collector", "scorer", "actions", "notifier")


def _purge(service: str) -> tuple[CommonSettings, Purge]:
    if service == "collector":
        from services.collector.repository import purge_expired as collector_purge
        from services.collector.settings import CollectorSettings

        return CollectorSettings(), collector_purge
    if service == "scorer":
        from services.scorer.repository.erasure import purge_expired as scorer_purge
        from services.scorer.settings import ScorerSettings

        return ScorerSettings(), scorer_purge
    if service == "actions":
        from services.actions.repository.erasure import purge_expired as actions_purge
        from services.actions.settings import ActionsSettings

        return ActionsSettings(), actions_purge
    from services.notifier.erasure_store import NotifierErasure
    from services.notifier.policy import AddressKeys
    from services.notifier.settings import NotifierSettings

    cfg = NotifierSettings()
    keys = AddressKeys(cfg.address_hasher_for(cfg.environment))
    return cfg, NotifierErasure(keys=keys, outbox_dir=cfg.outbox_dir).purge_expired


async def _run(service: str, now: datetime) -> dict[str, int]:
    cfg, purge = _purge(service)
    engine = make_engine(cfg.database_url, pool_size=1, application_name=f"csat-{service}-retention")
    try:
        return await purge_once(engine, purge, Cutoffs.at(now, cfg), service=service)
    finally:
        await engine.dispose()


def main(service: str) -> int:
    removed = asyncio.run(_run(service, datetime.now(UTC)))
    print(json.dumps({"service": service, "removed": removed}, sort_keys=True))
    return 0
