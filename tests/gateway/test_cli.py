"""The `fedgate` command as an operator uses it (real subprocesses, embedded default)."""

from __future__ import annotations

from pathlib import Path

from tests.gateway.helpers import gateway_at, run_cli
from tokens.vault import StoredCredential


def test_user_lifecycle(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "user", "add", "alice", "--password-stdin", stdin="a long password\n")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("fgk_")
    assert run_cli(tmp_path, "user", "add", "alice").returncode == 1
    assert "alice" in run_cli(tmp_path, "user", "list").stdout
    gw = gateway_at(tmp_path)
    try:
        user = gw.users.authenticate_key(key)
        assert user is not None and user.name == "alice"
        assert gw.users.authenticate_password("alice", "a long password") is not None
    finally:
        gw.close()
    assert run_cli(tmp_path, "user", "delete", "alice").returncode == 0
    assert "alice" not in run_cli(tmp_path, "user", "list").stdout


def test_vault_rotate_in_place_keeps_every_secret(tmp_path: Path) -> None:
    assert run_cli(tmp_path, "user", "add", "bob").returncode == 0
    gw = gateway_at(tmp_path)
    try:
        gw.vault.put("bob", "local", StoredCredential("apikey", {"apiKey": "s3cr3t-value-42"}))
    finally:
        gw.close()
    key_file = tmp_path / "state" / "master.key"
    before = key_file.read_text()
    r = run_cli(tmp_path, "vault", "rotate")
    assert r.returncode == 0, r.stderr
    after = key_file.read_text()
    assert after != before and after.endswith(before)  # new key first, old kept after
    assert "s3cr3t" not in r.stdout + r.stderr
    gw = gateway_at(tmp_path)  # a restart: everything readable under the new keyring
    try:
        cred = gw.vault.get("bob", "local")
        assert cred is not None and cred.fields["apiKey"] == "s3cr3t-value-42"
        info = gw.vault.list("bob")[0]
        assert info.key_id == gw.master_keys.current_id
    finally:
        gw.close()
    for f in (tmp_path / "state").glob("state.db*"):
        assert b"s3cr3t-value-42" not in f.read_bytes()


def test_db_upgrade_and_audit(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "db", "upgrade")
    assert r.returncode == 0 and "schema version" in r.stdout
    assert run_cli(tmp_path, "db", "upgrade").stdout == r.stdout  # idempotent
    assert run_cli(tmp_path, "audit", "--limit", "5").returncode == 0


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nno_such_key = 1\n")
    r = run_cli(tmp_path, "--config", str(bad), "user", "list")
    assert r.returncode == 2 and "no_such_key" in r.stderr
