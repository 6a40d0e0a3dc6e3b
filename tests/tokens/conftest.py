"""Fixtures for the tokens tests: every store-backed test runs on SQLite and on a real
PostgreSQL started by scripts/testbeds/postgres.sh (one fresh schema per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres
from tokens.store import Store


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database (not yet upgraded)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    else:
        yield from postgres.schema_url(request.getfixturevalue("pg_server"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An upgraded store; open a second one on ``db_url`` to play another replica."""
    s = Store.open(db_url)
    s.upgrade()
    yield s
    s.close()
