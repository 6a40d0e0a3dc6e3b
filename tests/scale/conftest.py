"""A real PostgreSQL (scripts/testbeds/postgres.sh) and a fresh schema per use."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PG_SCRIPT = REPO / "scripts" / "testbeds" / "postgres.sh"
PG_URL = "postgresql://postgres@127.0.0.1:55432/fedgate"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    subprocess.run(["bash", str(PG_SCRIPT), "start"], check=True, capture_output=True)
    yield PG_URL
    subprocess.run(["bash", str(PG_SCRIPT), "stop"], check=False, capture_output=True)


def schema_url(server_url: str) -> Iterator[str]:
    """An empty schema; every connection made with the URL sees only it."""
    import psycopg

    schema = "scale_" + secrets.token_hex(6)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{server_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def pg_schema(pg_server: str) -> Iterator[str]:
    yield from schema_url(pg_server)


@pytest.fixture(scope="module")
def pg_schema_module(pg_server: str) -> Iterator[str]:
    yield from schema_url(pg_server)
