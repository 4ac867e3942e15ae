"""A console on the real stack for the Scores and Segments tests: the broker, PostgreSQL, the scorer app
and the console app, each served by uvicorn on loopback, a store fed with known ratings.

The console signs people's access tokens with a key the scorer is given the public half of
(``identity_public_keys``), as ``make run`` does, so the scorer checks the same grants once it verifies
tokens. Ratings are published on the ratings topic as the collector publishes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.console.bootstrap import create_app as console_app
from services.console.settings import ConsoleSettings
from services.scorer.bootstrap import create_app as scorer_app
from shared import events as ev
from shared.db import make_engine
from shared.envelope import OutgoingRecord, encode
from shared.identity.accesstokens import AccessTokenIssuer, KeyRing, SigningKey
from shared.identity.passwords import Passwords
from shared.identity.ports import NewUser
from shared.identity.principal import Principal, PrincipalKind, SegmentGrant
from shared.identity.repository import PgIdentityStore
from shared.identity.scopes import ROLE_SCOPES, Role
from shared.scales import Metric
from shared.topics import Topics
from tests.helpers import make_settings, produce, serving, wait_for
from tests.infra import Infra
from tests.integration.test_scorer_queries import rating, scorer_settings, stored
from tests.scorer_checks import fetch_value

CHEAP = Passwords(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "a long local password"

#: The issue's worked example: 300 x 5, 400 x 4, 100 x 3, 200 x 2 on one store -> CSAT 70 % over 1,000.
PARIS_SCORES = [5] * 300 + [4] * 400 + [3] * 100 + [2] * 200


@dataclass
class ScoresStack:
    console: str  # base URL
    scorer: str
    topics: Topics
    bootstrap: str
    feed: Any  # the console's live feed (``connected``)
    key: SigningKey
    live_ratings: int = 0

    async def api(self, path: str, **params: Any) -> Any:
        """The scorer's own answer, asked as a manager would through the console (their access token)."""
        manager = Principal(
            subject="u-test", kind=PrincipalKind.PERSON, role=Role.MANAGER, scopes=ROLE_SCOPES[Role.MANAGER]
        )
        token = (
            AccessTokenIssuer(key=self.key, issuer="csat-console", audience="csat-api").mint(manager).token
        )
        async with httpx.AsyncClient(base_url=self.scorer, timeout=30) as client:
            answer = await client.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def publish(self, records: list[OutgoingRecord]) -> None:
        await produce(self.bootstrap, records)

    async def rate(self, score: int, **segment: str) -> None:
        """One more rating, now (what a customer answering on the site causes)."""
        self.live_ratings += 1
        rid = f"live-{self.live_ratings}"
        await self.publish(
            [rating(rid, score, topic=self.topics.ratings, ago=timedelta(seconds=5), **segment)]
        )


def ratings(topic: str) -> list[OutgoingRecord]:
    """paris-1: the worked example over the last 28 days (chat 600, web 400), a worse previous period and
    a better year before, NPS and CES answers; other stores around it, lyon-2 well below the whole."""

    def spread(
        prefix: str, scores: list[int], *, first_day: int = 0, days: int = 28, **kw: Any
    ) -> list[OutgoingRecord]:
        return [
            rating(f"{prefix}-{i}", s, topic=topic, ago=timedelta(days=first_day + i % days, hours=3), **kw)
            for i, s in enumerate(scores)
        ]

    out = [
        rating(
            f"p-{i}",
            s,
            topic=topic,
            ago=timedelta(days=i % 28, hours=3),
            store="paris-1",
            channel="chat" if i % 5 < 3 else "web",
            # The first 100 answer survey invitations (``invitations``): 100 of 1,250 invited = 8 %.
            survey_id=f"inv-p-{i}" if i < SURVEY_ANSWERS else None,
            # a quarter of those answered the follow-up question too: completion 25 %
            comment="Quick and friendly" if i < SURVEY_ANSWERS and i % 4 == 0 else None,
        )
        for i, s in enumerate(PARIS_SCORES)
    ]
    out += spread("pp", [5] * 150 + [4] * 160 + [2] * 190, first_day=31, store="paris-1", channel="chat")
    out += spread("py", [5] * 120 + [4] * 120 + [1] * 60, first_day=365, store="paris-1", channel="chat")
    nps = [10] * 90 + [9] * 40 + [8] * 50 + [7] * 20 + [5] * 30 + [2] * 20
    out += spread("pn", nps, metric="nps", scale="0-10", store="paris-1", channel="chat")
    out += spread(
        "pc",
        [7] * 40 + [6] * 50 + [5] * 30 + [3] * 20 + [1] * 10,
        metric="ces",
        scale="1-7",
        store="paris-1",
        channel="web",
    )
    out += spread("l", [5] * 10 + [1] * 30, store="lyon-2", channel="web")
    out += spread("n", [5] * 70 + [4] * 32 + [3] * 18, store="nice-3", channel="chat")
    out += spread("li", [5] * 20 + [4] * 27 + [2] * 13, store="lille-4", channel="phone")
    out += spread("m", [5] * 12 + [1] * 8, store="marseille-5", channel="web")
    return out


SURVEY_ANSWERS, SURVEY_INVITED = 100, 1250


def invitations(topic: str) -> list[OutgoingRecord]:
    """paris-1's CSAT survey over the same 28 days: 1,250 invitations, answered by the first 100 of the
    worked example's ratings (their ``survey_id``, 25 with a comment): a response rate of 8 %, under the
    10 % threshold, and a completion rate of 25 %."""
    now = datetime.now(UTC)
    out = []
    for i in range(SURVEY_INVITED):
        at = now - timedelta(days=i % 28, hours=4)
        out.append(
            encode(
                topic=topic,
                event_type=ev.SURVEY_INVITED,
                source="/actions",
                event_id=f"survey-invited-inv-p-{i}",
                key=f"cus-p-{i}",
                data=ev.SurveyInvited(
                    invitation_id=f"inv-p-{i}",
                    survey_id="post-visit",
                    metric=Metric.CSAT,
                    scale="1-5",
                    channel="email",
                    segment={"store": "paris-1", "channel": "chat" if i % 5 < 3 else "web"},
                    invited_at=at,
                    expires_at=at + timedelta(days=30),
                ),
            )
        )
    return out


async def survey_figures(database_url: str) -> tuple[int, int]:
    row = await fetch_value(
        database_url,
        "SELECT count(invited_at)::text || ',' || count(answered_at) FILTER (WHERE invited_at IS NOT NULL) "
        "FROM scorer.survey_responses",
    )
    invited, answered = str(row).split(",")
    return int(invited), int(answered)


async def people(database_url: str) -> None:
    engine = make_engine(database_url)
    store = PgIdentityStore(engine=engine, timeout_s=5)
    try:
        for email, name, role, grants in (
            ("maya@example.com", "Maya Manager", Role.MANAGER, None),
            ("bo@example.com", "Bo Store", Role.VIEWER, frozenset({SegmentGrant.parse("store:paris-1")})),
        ):
            await store.create_user(
                user=NewUser(
                    email=email,
                    display_name=name,
                    role=role,
                    segments=grants,
                    password_hash=CHEAP.hash(PASSWORD),
                )
            )
    finally:
        await engine.dispose()


@asynccontextmanager
async def scores_stack(infra: Infra, database_url: str, topics: Topics) -> AsyncIterator[ScoresStack]:
    key = SigningKey.generate()
    public = json.dumps(KeyRing.of([key]).to_jwks())
    await people(database_url)
    records = ratings(topics.ratings)
    await produce(infra.bootstrap, records + invitations(topics.surveys_invited))
    scorer_cfg = scorer_settings(
        infra, database_url, topics, score_event_interval_s=1, identity_public_keys=public, environment="test"
    )
    async with serving(scorer_app(scorer_cfg)) as scorer_url:
        await wait_for(lambda: stored(database_url), until=lambda n: n == len(records), timeout_s=90)
        await wait_for(
            lambda: survey_figures(database_url),
            until=lambda f: f == (SURVEY_INVITED, SURVEY_ANSWERS),
            timeout_s=60,
        )
        cfg = make_settings(
            ConsoleSettings,
            environment="test",
            database_url=database_url,
            cookie_secure=False,  # plain http on loopback
            identity_signing_key=key.private_jwk(),
            identity_public_keys=public,
            scorer_url=scorer_url,
            kafka_bootstrap=infra.bootstrap,
            topic_prefix=topics.prefix,
            live_heartbeat_s=2,
            live_min_gap_s=0.5,
        )
        app = console_app(cfg, passwords=CHEAP)
        async with serving(app) as console_url:
            feed = app.state.live_feed
            await wait_for(lambda: _value(feed.connected), until=bool, timeout_s=30)
            yield ScoresStack(
                console=console_url,
                scorer=scorer_url,
                topics=topics,
                bootstrap=infra.bootstrap,
                feed=feed,
                key=key,
            )


async def _value(value: bool) -> bool:
    return value


async def signed_in(base: str, email: str) -> httpx.AsyncClient:
    """A browser-like client (its own cookies) signed in with the local password."""
    client = httpx.AsyncClient(base_url=base, headers={"accept": "text/html"}, timeout=30)
    form = await client.get("/signin")
    token = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', form.text)
    assert token, form.text[:300]
    answer = await client.post(
        "/signin", data={"email": email, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"}
    )
    assert answer.status_code == 303, answer.text[:300]
    return client
