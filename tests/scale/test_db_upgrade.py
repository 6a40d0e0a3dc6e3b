"""``fedgate db upgrade`` on PostgreSQL: creates the schema, is idempotent, and several
replicas running it at once (as each pod's start does) agree on one schema."""

from __future__ import annotations

import base64
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from tests.scale.procs import FEDGATE, cli, write_config
from tokens.migrations import MIGRATIONS

LATEST = MIGRATIONS[-1].version
TABLES = {"users", "api_keys", "vault", "signing_keys", "issued_tokens", "revocations", "audit"}


def _tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {r[0] for r in rows}


def test_db_upgrade_on_postgres_from_env(pg_schema: str, tmp_path: Path) -> None:
    assert _tables(pg_schema) == set()
    env = {**os.environ, "FEDGATE_DATABASE_URL": pg_schema, "FEDGATE_CONFIG": ""}
    for _ in range(2):  # the second run finds nothing to do
        res = subprocess.run(
            [FEDGATE, "db", "upgrade"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == f"schema version {LATEST}"
    assert _tables(pg_schema) >= TABLES | {"schema_version"}
    with psycopg.connect(pg_schema, autocommit=True) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version").fetchall()]
    assert versions == [m.version for m in MIGRATIONS]
    # Nothing was written next to the process: the state lives in PostgreSQL only.
    assert not (tmp_path / ".fedgate" / "state.db").exists()


def test_concurrent_upgrades_and_a_usable_database(pg_schema: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "fedgate.toml", tmp_path / "state", {}, pg_schema)
    env = {"FEDGATE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: cli(config, env, "db", "upgrade"), range(4)))
    assert all(o.strip() == f"schema version {LATEST}" for o in outs)
    # The database is usable by the other commands afterwards.
    key = cli(config, env, "user", "add", "ops", "--admin").strip()
    assert key
    assert cli(config, env, "user", "list").split() == ["ops", "(admin)"]
