"""docs/operations.md, "Backups", done as written on the embedded default: the state is
copied with ``fedgate db backup`` while ``fedgate serve`` runs, the master key file
apart; the state directory is then lost, and restoring both brings back users, API
keys and the stored credential, which opens the real SeaweedFS bucket again. A key
rotated after the backup does not strand it (in-place rotation keeps the old keys)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import httpx
import psycopg

from tests import postgres
from tests.gateway.stored_s3 import (
    PAYLOAD,
    key_id,
    read_back,
    s3_mount,
    store_credential_and_file,
)
from tests.scale.procs import FEDGATE, cli, serve, write_config
from tokens.masterkey import MasterKeys


def fedgate(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FEDGATE, "--config", str(config), *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_backup_while_serving_then_restore_after_losing_the_state(
    tmp_path: Path,
    stored_s3_prefix: str,
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "fedgate.toml", state, {"s3": s3_mount(stored_s3_prefix)})
    admin = cli(config, {}, "user", "add", "admin", "--admin").strip()
    backups = tmp_path / "backups"
    backups.mkdir()
    server = serve(config, {}, tmp_path / "serve.log")
    try:
        store_credential_and_file(server.api, admin)
        # The backup, taken live: the database, and the key file apart from it.
        res = fedgate(config, "db", "backup", str(backups / "state.db"))
        assert res.returncode == 0, res.stderr
        kid = key_id((state / "master.key").read_text())
        assert f"needs master key {kid}" in res.stderr
        shutil.copy2(state / "master.key", backups / "master.key")
        assert stat.S_IMODE((backups / "state.db").stat().st_mode) == 0o600
        # After the backup: a rotation (the old key stays in the file) and a new user.
        assert fedgate(config, "vault", "rotate").returncode == 0
        assert read_back(server.api, admin).content == PAYLOAD
        later = cli(config, {}, "user", "add", "later").strip()
    finally:
        server.stop()
    for secret in (admin, "testsecret"):
        assert secret.encode() not in (backups / "state.db").read_bytes()

    # The state directory is lost. Restore: the database alone is refused...
    shutil.rmtree(state)
    state.mkdir(mode=0o700)
    shutil.copy2(backups / "state.db", state / "state.db")
    res = fedgate(config, "user", "list")
    assert res.returncode == 1 and kid in res.stderr and "Traceback" not in res.stderr
    assert not (state / "master.key").exists()  # no key made up on a state with secrets
    # ...and with the key file of the backup, everything of the backup is back.
    shutil.copy2(backups / "master.key", state / "master.key")
    server = serve(config, {}, tmp_path / "serve.log")
    try:
        r = read_back(server.api, admin)
        assert r.status_code == 200 and r.content == PAYLOAD
        # What came after the backup is not in it.
        r = httpx.get(server.api + "/user/externalKeys", headers={"apikey": later})
        assert r.status_code == 401
    finally:
        server.stop()


def test_an_older_backup_restores_with_the_rotated_key_file(
    tmp_path: Path,
    stored_s3_prefix: str,
) -> None:
    state = tmp_path / "state"
    config = write_config(tmp_path / "fedgate.toml", state, {"s3": s3_mount(stored_s3_prefix)})
    admin = cli(config, {}, "user", "add", "admin", "--admin").strip()
    server = serve(config, {}, tmp_path / "serve.log")
    try:
        store_credential_and_file(server.api, admin)
    finally:
        server.stop()
    assert fedgate(config, "db", "backup", str(tmp_path / "old.db")).returncode == 0
    assert fedgate(config, "vault", "rotate").returncode == 0
    assert fedgate(config, "vault", "rotate").returncode == 0
    # Restore the old database under today's key file (new keys first, old ones after).
    for f in state.glob("state.db*"):
        f.unlink()
    shutil.copy2(tmp_path / "old.db", state / "state.db")
    server = serve(config, {}, tmp_path / "serve.log")
    try:
        assert read_back(server.api, admin).content == PAYLOAD
    finally:
        server.stop()


def _pg_tool(name: str) -> str:
    return str(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))[-1])


def test_postgresql_dump_and_restore_with_the_keyring(
    tmp_path: Path,
    stored_s3_prefix: str,
    pg_server: str,
) -> None:
    """The PostgreSQL way of "Backups": pg_dump, the database lost, pg_restore, the same
    keyring file; a keyring without the key is refused on the restored database."""
    db = postgres.schema_url(pg_server, "bk_")
    url = next(db)
    schema = url.split("search_path%3D")[1]
    key_file = tmp_path / "keyring"
    key_file.write_text(MasterKeys.generate() + "\n")
    env = {"FEDGATE_MASTER_KEY_FILE": str(key_file)}
    config = write_config(
        tmp_path / "fedgate.toml", tmp_path / "state", {"s3": s3_mount(stored_s3_prefix)}, url
    )
    pg = ["-h", "127.0.0.1", "-p", "55432", "-U", "postgres", "-d", "fedgate"]
    try:
        admin = cli(config, env, "user", "add", "admin", "--admin").strip()
        server = serve(config, env, tmp_path / "serve.log")
        try:
            store_credential_and_file(server.api, admin)
        finally:
            server.stop()
        dump = tmp_path / "fedgate.dump"
        subprocess.run([_pg_tool("pg_dump"), *pg, "-Fc", "-n", schema, "-f", str(dump)], check=True)
        assert b"testsecret" not in dump.read_bytes() and admin.encode() not in dump.read_bytes()
        with psycopg.connect(pg_server, autocommit=True) as conn:  # the database is lost
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        subprocess.run([_pg_tool("pg_restore"), *pg, str(dump)], check=True)
        wrong = tmp_path / "wrong"
        wrong.write_text(MasterKeys.generate() + "\n")
        res = subprocess.run(
            [FEDGATE, "--config", str(config), "user", "list"],
            env={**os.environ, "FEDGATE_MASTER_KEY_FILE": str(wrong)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 1 and key_id(key_file.read_text()) in res.stderr
        server = serve(config, env, tmp_path / "serve.log")
        try:
            r = read_back(server.api, admin)
            assert r.status_code == 200 and r.content == PAYLOAD
        finally:
            server.stop()
    finally:
        next(db, None)
