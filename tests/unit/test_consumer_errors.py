"""Which failures the consumer loop retries (transient) and which it isolates (poison)."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError

from shared.consumer import _is_transient


class _DriverError(Exception):
    """Stands in for SQLAlchemy's asyncpg adapter error, which carries the server's SQLSTATE."""

    def __init__(self, message: str, sqlstate: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _dbapi(message: str, sqlstate: str | None, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, _DriverError(message, sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("message", "sqlstate"),
    [
        # Seen when PostgreSQL stops under a running batch (the fault suite's 60 s outage):
        ("connection was closed in the middle of operation", "08003"),
        ("terminating connection due to administrator command", "57P01"),
        ("the database system is shutting down", "57P03"),
        ("the database system is starting up", "57P03"),
        ("deadlock detected", "40P01"),
        ("could not serialize access", "40001"),
        ("sorry, too many clients already", "53300"),
    ],
)
def test_database_going_away_is_transient(message: str, sqlstate: str) -> None:
    assert _is_transient(_dbapi(message, sqlstate))


@pytest.mark.parametrize(
    ("message", "sqlstate"),
    [
        ("value out of range for type smallint", "22003"),
        ("null value in column violates not-null constraint", "23502"),
        ("invalid input syntax for type json", "22P02"),
        ("no SQLSTATE at all", None),
    ],
)
def test_bad_data_is_not_transient(message: str, sqlstate: str | None) -> None:
    assert not _is_transient(_dbapi(message, sqlstate))


def test_invalidated_connection_is_transient() -> None:
    assert _is_transient(_dbapi("connection is closed", None, invalidated=True))
