"""Fixtures for the tokens tests: every store-backed test runs on SQLite and on a real
PostgreSQL started by scripts/testbeds/postgres.sh (one fresh schema per test)."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokens.store import Store

REPO = Path(__file__).resolve().parents[2]
PG_SCRIPT = REPO / "scripts" / "testbeds" / "postgres.sh"
PG_URL = "postgresql://postgres@127.0.0.1:55432/fedgate"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    subprocess.run(["bash", str(PG_SCRIPT), "start"], check=True, capture_output=True)
    yield PG_URL
    subprocess.run(["bash", str(PG_SCRIPT), "stop"], check=False, capture_output=True)


def _pg_schema_url(server_url: str) -> Iterator[str]:
    import psycopg

    schema = "t_" + secrets.token_hex(6)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    # libpq URL option: every connection of the store sees only this schema.
    yield f"{server_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database (not yet upgraded)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/state.db"
    else:
        yield from _pg_schema_url(request.getfixturevalue("pg_server"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """An upgraded store; open a second one on ``db_url`` to play another replica."""
    s = Store.open(db_url)
    s.upgrade()
    yield s
    s.close()
