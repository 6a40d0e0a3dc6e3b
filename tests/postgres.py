"""The real PostgreSQL the tests share (scripts/testbeds/postgres.sh), and empty schemas
in it so tests never see each other's tables."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_SCRIPT = REPO / "scripts" / "testbeds" / "postgres.sh"
PG_URL = "postgresql://postgres@127.0.0.1:55432/fedgate"


def server() -> Iterator[str]:
    """Start the cluster for a test session; stop it at the end only if this session
    started it (a cluster that was already running is shared with other sessions).

    ``FEDGATE_TEST_PG_URL`` names a cluster someone else runs and keeps running: the
    mutation runs (tests/mutation.py) test a copy of the tree, whose own script would
    find the port taken by the checkout's cluster."""
    given = os.environ.get("FEDGATE_TEST_PG_URL")
    if given:
        yield given
        return
    started = subprocess.run(["bash", str(PG_SCRIPT), "start"], check=True, capture_output=True)
    yield PG_URL
    if b"already running" not in started.stdout:
        subprocess.run(["bash", str(PG_SCRIPT), "stop"], check=False, capture_output=True)


def schema_url(server_url: str, prefix: str = "t_") -> Iterator[str]:
    """An empty schema; every connection made with the URL sees only it (libpq option)."""
    import psycopg

    schema = prefix + secrets.token_hex(6)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield f"{server_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
