"""``FEDGATE_ADMIN_KEY_FILE`` (what the Helm chart sets): the first admin's key never
reaches a log. Real ``fedgate serve`` processes on the embedded default."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from tests.scale.procs import FEDGATE, cli, free_port, serve, write_config

KEY = "fgk_0123456789abcdef_" + "Zz9-_" * 9


def setup(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    mounts = {"d": {"type": "posix", "root": str(data)}}
    return write_config(tmp_path / "fedgate.toml", tmp_path / "state", mounts)


def test_no_file_no_admin_then_the_operator_makes_one(tmp_path: Path) -> None:
    config = setup(tmp_path)
    env = {"FEDGATE_ADMIN_KEY_FILE": str(tmp_path / "absent")}
    server = serve(config, env, tmp_path / "serve.log")
    try:
        assert cli(config, env, "user", "list").strip() == ""  # nobody was made
        key = cli(config, env, "user", "add", "admin", "--admin").strip()
        r = httpx.get(server.api + "/user/externalKeys", headers={"apikey": key})
        assert r.status_code == 200
    finally:
        server.stop()
    log = (tmp_path / "serve.log").read_text()
    assert "fedgate user add admin --admin" in log and "fgk_" not in log


def test_the_key_in_the_file_is_the_admins_and_is_never_printed(tmp_path: Path) -> None:
    config = setup(tmp_path)
    (tmp_path / "api-key").write_text(KEY + "\n")
    env = {"FEDGATE_ADMIN_KEY_FILE": str(tmp_path / "api-key")}
    server = serve(config, env, tmp_path / "serve.log")
    try:
        r = httpx.get(server.api + "/user/externalKeys", headers={"apikey": KEY})
        assert r.status_code == 200, r.text
    finally:
        server.stop()
    assert KEY not in (tmp_path / "serve.log").read_text()
    assert "fgk_" not in (tmp_path / "serve.log").read_text()


def test_a_malformed_key_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    config = setup(tmp_path)
    bad = "fgk_not-a-key-" + "x" * 30
    (tmp_path / "api-key").write_text(bad)
    res = subprocess.run(
        [FEDGATE, "--config", str(config), "serve", "--port", str(free_port())],
        env={**os.environ, "FEDGATE_ADMIN_KEY_FILE": str(tmp_path / "api-key")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "FEDGATE_ADMIN_KEY_FILE" in lines[0], res.stderr
    assert bad not in res.stderr and "Traceback" not in res.stderr
