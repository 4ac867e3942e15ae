"""Live updates: a server-sent event stream per open Scores page, saying only "refresh".

The stream carries no figure: on ``event: scores`` the page fetches ``/scores/panel`` like any page
(session, grants, the scorer's own check). It opens only for a segment the person may read, ends
when their session ends or their role or grants change (``event: end``), sends a comment every
``CSAT_LIVE_HEARTBEAT_S`` so proxies keep it open, and at most one refresh per
``CSAT_LIVE_MIN_GAP_S`` (changes in between coalesce into it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from services.console.deps import ConsoleDeps
from services.console.guard import SignedIn
from services.console.live import Subscription
from services.console.routes.scores import SegmentQuery, granted_filters
from services.console.web import PageError
from shared.identity.ports import StoreUnavailable
from shared.identity.scopes import Scope

log = structlog.get_logger(__name__)

RETRY_MS = 5000  # how long a browser waits before reconnecting a dropped stream


def router(deps: ConsoleDeps) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    reader = Depends(deps.gate.person(Scope.SCORES_READ))

    @r.get("/live/scores")
    async def live_scores(
        request: Request,
        metric: str | None = None,
        window: str | None = None,
        segment: SegmentQuery = None,
        person: SignedIn = reader,
    ) -> Response:
        filters = granted_filters(person, metric=metric, window=window, segment=segment)
        sub = deps.live.subscribe(filters=filters.attributes, owner=person.session_key)
        if sub is None:
            log.info("live_streams_full", principal=person.principal.log_name, streams=deps.live.streams)
            raise PageError(503, "live.full_title", "live.full")
        return StreamingResponse(
            _events(deps, person, sub),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return r


async def _events(deps: ConsoleDeps, person: SignedIn, sub: Subscription) -> AsyncIterator[str]:
    """``retry``, then refreshes, heartbeats and the session check until the browser or the session goes."""
    cfg = deps.settings
    checked = time.monotonic()
    try:
        yield f"retry: {RETRY_MS}\n: live\n\n"
        while True:
            due = await sub.wait(cfg.live_heartbeat_s)
            if time.monotonic() - checked >= cfg.live_session_check_s:
                checked = time.monotonic()
                if not await _still_active(deps, person):
                    yield "event: end\ndata: session\n\n"
                    return
            if not due:
                yield ": keep-alive\n\n"
                continue
            yield "event: scores\ndata: refresh\n\n"
            if cfg.live_min_gap_s:
                await asyncio.sleep(cfg.live_min_gap_s)
    finally:
        deps.live.unsubscribe(sub)


async def _still_active(deps: ConsoleDeps, person: SignedIn) -> bool:
    """The session check; a database that does not answer leaves the stream open until the next one."""
    try:
        return await deps.gate.still_active(person)
    except StoreUnavailable:
        return True
