"""The four services as separate processes on the real broker and PostgreSQL, driven over HTTP only."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.ports import free_port
from devstack.stack import SERVICES, Stack
from tests.credentials import ADMIN
from tests.helpers import TEST_KAFKA_PROCESS_ENV
from tests.infra import Infra, drop_database, new_database, new_topics

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    name = new_database(infra)
    topics = new_topics(infra, partitions=3)
    s = Stack(
        var_dir=Path(tmp_path_factory.mktemp("stack")),
        kafka_bootstrap=infra.bootstrap,
        database_url=infra.db_url(name),
        topic_prefix=topics.prefix,
        ports={svc: free_port() for svc in SERVICES},
        extra_env={
            **TEST_KAFKA_PROCESS_ENV,
            "CSAT_LOG_FORMAT": "json",
        },
    )
    s.start_infrastructure()
    try:
        s.start_services()
        yield s
    finally:
        s.stop()
        drop_database(infra, name)


def poll(fn: Any, until: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    value = fn()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s}s; last: {value!r}")
        time.sleep(0.2)
        value = fn()
    return value


def test_low_rating_reaches_the_csm_outbox(stack: Stack) -> None:
    collector, notifier = stack.services["collector"].url, stack.services["notifier"].url
    customer = f"cus-{uuid.uuid4().hex[:8]}"
    r = httpx.post(
        f"{collector}/v1/ratings",
        json={
            "metric": "csat",
            "scale": "1-5",
            "score": 1,
            "comment": "Nobody answered",
            "customer": {"id": customer, "email": "lea@example.com"},
            "segment": {"store": "lyon-2", "channel": "phone"},
            "touchpoint": "support_call",
            "account": {"id": "acc-1", "tier": "strategic", "value": 250000},
        },
    )
    assert r.status_code == 202, r.text

    def alerts() -> Any:
        got = httpx.get(
            f"{notifier}/v1/outbox",
            params={"rule_id": "strategic-account-alert", "limit": 500},
            headers=ADMIN,
        ).json()
        return [m for m in got["messages"] if customer in str(m["subject"])]

    found = poll(alerts, until=lambda m: len(m) == 1)
    alert = found[0]
    assert alert["recipient"] == "csm@example.com"
    assert "lea@example.com" in alert["body"] and "Nobody answered" in alert["body"]
    assert "store: lyon-2" in alert["body"]
    outbox_file = stack.var_dir / "outbox" / f"{alert['notification_id']}.txt"
    assert outbox_file.read_text().startswith("To: csm@example.com")


def test_thousand_ratings_give_csat_70(stack: Stack) -> None:
    collector, scorer = stack.services["collector"].url, stack.services["scorer"].url
    campaign = f"e2e-{uuid.uuid4().hex[:8]}"
    scores = [5] * 300 + [4] * 400 + [3] * 100 + [2] * 200
    ratings = [
        {
            "metric": "csat",
            "scale": "1-5",
            "score": s,
            "customer": {"id": f"c-{i}"},
            "segment": {"campaign": campaign},
        }
        for i, s in enumerate(scores)
    ]
    for start in range(0, 1000, 500):
        r = httpx.post(
            f"{collector}/v1/ratings/batch", json={"ratings": ratings[start : start + 500]}, timeout=30
        )
        assert r.status_code == 202 and r.json()["accepted"] == 500

    def score() -> Any:
        return httpx.get(
            f"{scorer}/v1/scores",
            params={"metric": "csat", "window": "30d", "segment": f"campaign:{campaign}"},
            headers=ADMIN,
        ).json()

    body = poll(score, until=lambda b: b["responses"] == 1000)
    assert body["score"] == 70.0
    assert body["positive"] == 700
    assert body["segment"] == {"campaign": campaign}


def test_every_service_is_healthy_ready_and_exports_metrics(stack: Stack) -> None:
    for name in SERVICES:
        url = stack.services[name].url
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/readyz").status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert "csat_http_requests_total" in metrics


def test_collector_serves_the_widget_demo_with_the_provisioned_key(stack: Stack) -> None:
    collector = stack.services["collector"].url
    assert stack.demo_key is not None
    page = httpx.get(f"{collector}/demo")
    assert page.status_code == 200 and f'key="{stack.demo_key}"' in page.text
    assert "customElements.define" in httpx.get(f"{collector}/widget.js").text
    r = httpx.post(
        f"{collector}/v1/ratings",
        json={"metric": "nps", "score": 10, "customer": {"id": "cus-demo-e2e"}},
        headers={"Authorization": f"Bearer {stack.demo_key}", "Origin": collector},
    )
    assert r.status_code == 202 and r.headers["access-control-allow-origin"] == collector
