"""Fixtures: real broker and PostgreSQL for the session; a database and a topic set per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.topics import Topics
from tests.infra import Infra, drop_database, new_database, new_topics, start_infra


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    yield from start_infra(tmp_path_factory.mktemp("infra"))


@pytest.fixture
def database_url(infra: Infra) -> Iterator[str]:
    name = new_database(infra)
    yield infra.db_url(name)
    drop_database(infra, name)


@pytest.fixture
def topics(infra: Infra) -> Topics:
    return new_topics(infra)
