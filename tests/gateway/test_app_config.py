"""Serving options: the API prefix (VIP's /rest, a custom one, or none) and CORS."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway import config
from tests.server import local_settings, running


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
def test_api_prefix(tmp_path: Path, prefix: str) -> None:
    with running(local_settings(tmp_path, api_prefix=prefix)) as gw:
        assert gw.api == gw.url + prefix
        r = httpx.get(f"{gw.url}{prefix}/path/local?action=exists", headers={"apikey": gw.key})
        assert r.json() == {"exists": True}
        assert httpx.get(f"{gw.url}{prefix}/platform").status_code == 200
        if prefix:
            assert httpx.get(f"{gw.url}/rest/platform").status_code == 404
        doc = httpx.get(gw.url + "/openapi.json").json()
        assert f"{prefix}/path/{{completePath}}" in doc["paths"]


def test_cors_for_configured_origins(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, cors_origins=("https://portal.example",))
    with running(settings) as gw:
        pre = httpx.options(
            gw.api + "/path/local?action=list",
            headers={
                "Origin": "https://portal.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "apikey",
            },
        )
        assert pre.status_code == 200
        assert pre.headers["access-control-allow-origin"] == "https://portal.example"
        assert "apikey" in pre.headers["access-control-allow-headers"].lower()
        r = httpx.get(
            gw.api + "/path/local?action=exists",
            headers={"Origin": "https://portal.example", "apikey": gw.key},
        )
        assert r.headers["access-control-allow-origin"] == "https://portal.example"
        other = httpx.get(
            gw.api + "/path/local?action=exists",
            headers={"Origin": "https://evil.example", "apikey": gw.key},
        )
        assert "access-control-allow-origin" not in other.headers


def test_config_file_and_env_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "fedgate.toml"
    cfg.write_text(
        '[server]\napi_prefix = "/vip"\nport = 9000\ncors_origins = ["https://a"]\n\n'
        '[mounts.scratch]\ntype = "posix"\nroot = "/scratch"\nwrite_users = ["alice"]\n'
    )
    s = config.load(
        str(cfg),
        env={
            "FEDGATE_PORT": "9100",
            "FEDGATE_MOUNT__EXTRA__TYPE": "posix",
            "FEDGATE_MOUNT__EXTRA__ROOT": "/extra",
        },
    )
    assert s.api_prefix == "/vip" and s.port == 9100 and s.cors_origins == ("https://a",)
    scratch = s.mount("scratch")
    assert scratch is not None and scratch.options["root"] == "/scratch"
    assert scratch.access_for("alice", False) == "modify"
    assert scratch.access_for("bob", False) == "read"
    extra = s.mount("extra")
    assert extra is not None and extra.options["root"] == "/extra"


def test_embedded_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = config.load(env={})
    assert [m.name for m in s.mounts] == ["local"]
    assert s.mounts[0].options["root"] == "./data"
    assert s.database.startswith("sqlite:///") and s.database.endswith(".fedgate/state.db")
    assert s.api_prefix == "/rest"


@pytest.mark.parametrize(
    "text",
    [
        "[server]\nbogus = 1\n",
        "[mounts.x]\nroot = '/x'\n",
        "[mounts.'bad name']\ntype = 'posix'\n",
        "not toml [",
    ],
)
def test_bad_config_is_refused(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(config.ConfigError):
        config.load(str(cfg), env={})
