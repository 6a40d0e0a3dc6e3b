"""The job-side client against a real gateway (uvicorn in a thread) on a posix mount:
the Python API, the ``fedgate`` commands, exit codes, credentials and token discovery."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from unittest import mock

import pytest

from gateway.client import (
    AuthError,
    Client,
    ConflictError,
    DeniedError,
    NotFoundError,
    UsageError,
)
from gateway.client.discovery import discover_credential, discover_gateway
from gateway.client.transfer import part_paths
from tests.client.helpers import fedgate
from tests.gateway.helpers import token
from tests.server import Running
from tokens.scopes import parse_scopes


@pytest.fixture
def tree(gw: Running) -> Path:
    (gw.data / "in" / "sub").mkdir(parents=True)
    (gw.data / "in" / "a.bin").write_bytes(os.urandom(300_000))
    (gw.data / "in" / "sub" / "b.txt").write_text("bee")
    (gw.data / "in" / "empty").write_bytes(b"")
    (gw.data / "out").mkdir()
    return gw.data


def test_get_file_by_platform_path_checks_sha256(gw: Running, tree: Path, tmp_path: Path) -> None:
    dest = tmp_path / "a.bin"
    with Client(gw.api, token(gw, "storage.read:/local/in")) as c:
        [res] = c.get("/local/in/a.bin", dest)
    assert dest.read_bytes() == (tree / "in" / "a.bin").read_bytes()
    assert res.checksum == "sha-256"  # the gateway's Repr-Digest, hashed beside the receive
    assert res.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
    assert res.bytes == 300_000 and not res.redirected
    assert not any(p.exists() for p in part_paths(dest))


def test_each_uri_form_names_the_same_file(gw: Running, tree: Path, tmp_path: Path) -> None:
    forms = [
        "/local/in/sub/b.txt",
        "fedgate:/local/in/sub/b.txt",
        f"{gw.api}/path/local/in/sub/b.txt",
        f"{gw.api}/path/local/in/sub/b.txt?action=content",
    ]
    with Client(gw.api, apikey=gw.key) as c:
        for i, uri in enumerate(forms):
            c.get(uri, tmp_path / f"b{i}")
            assert (tmp_path / f"b{i}").read_text() == "bee", uri
        assert c.resolve(forms[2]).path == "/local/in/sub/b.txt"


def test_get_into_existing_directory_and_recursive(gw: Running, tree: Path, tmp_path: Path) -> None:
    with Client(gw.api, apikey=gw.key) as c:
        c.get("/local/in/sub/b.txt", tmp_path)
        assert (tmp_path / "b.txt").read_text() == "bee"
        results = c.get("/local/in", tmp_path / "copy")
    assert (tmp_path / "copy" / "sub" / "b.txt").read_text() == "bee"
    assert (tmp_path / "copy" / "empty").read_bytes() == b""
    assert (tmp_path / "copy" / "a.bin").read_bytes() == (tree / "in" / "a.bin").read_bytes()
    assert sorted(r.operation for r in results) == ["get", "get", "get", "mkdir", "mkdir"]


def test_put_directory_recursively_with_create_only_token(
    gw: Running, tree: Path, tmp_path: Path
) -> None:
    src = tmp_path / "results"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "r.txt").write_text("result")
    (src / "deep" / "er" / "x.bin").write_bytes(os.urandom(70_000))
    (src / "zero").write_bytes(b"")
    tok = token(gw, "storage.create:/local/out")
    with Client(gw.api, tok) as c:
        results = c.put(src, "/local/out/run1/inner")  # parents run1 missing: created
    out = tree / "out" / "run1" / "inner"
    assert (out / "r.txt").read_text() == "result"
    assert (out / "deep" / "er" / "x.bin").read_bytes() == (src / "deep/er/x.bin").read_bytes()
    assert (out / "zero").read_bytes() == b""
    # a create-only token cannot read, yet every file is verified: the upload's answer
    # carries the sha-256 the gateway computed of what it stored (Repr-Digest)
    files = [r for r in results if r.operation == "put"]
    assert len(files) == 3 and all(r.checksum == "sha-256" for r in files)


def test_put_into_existing_directory_and_md5(gw: Running, tree: Path, tmp_path: Path) -> None:
    f = tmp_path / "one.txt"
    f.write_text("one")
    with Client(gw.api, apikey=gw.key) as c:
        [res] = c.put(f, "/local/out")
        assert res.path == "/local/out/one.txt" and res.checksum == "sha-256"
        assert c.stat("/local/out/one.txt").size == 3
        assert [e.name for e in c.ls("/local/out")] == ["one.txt"]
        with pytest.raises(ConflictError):
            c.mkdir("/local/out")


def test_errors_are_typed(gw: Running, tree: Path, tmp_path: Path) -> None:
    read_in = token(gw, "storage.read:/local/in")
    with Client(gw.api, read_in) as c:
        with pytest.raises(NotFoundError):
            c.stat("/local/in/nope")
        with pytest.raises(NotFoundError):
            c.stat("/nomount/x")
        with pytest.raises(NotFoundError):
            c.stat("s3://no-such-bucket/x")  # no mount covers it
        with pytest.raises(UsageError):
            c.stat("ftp://example.org/x")
        with pytest.raises(DeniedError):
            c.put(tmp_path, "/local/out/x")
        with pytest.raises(DeniedError):
            c.get("/local/out", tmp_path / "o")
    with Client(gw.api, "not-a-token") as c, pytest.raises(AuthError):
        c.stat("/local/in")
    assert not (tmp_path / "o").exists()


def _expired_token(gw: Running) -> str:
    past = time.time() - 7200
    with mock.patch("tokens.service.time.time", return_value=past):
        issued = gw.gateway.tokens.issue("admin", parse_scopes("storage.read:/local"), lifetime=60)
    return issued.access_token


def test_cli_get_json_and_quiet(gw: Running, tree: Path, tmp_path: Path) -> None:
    tok = token(gw, "storage.read:/local/in")
    env = {"FEDGATE_URL": gw.api, "BEARER_TOKEN": tok}
    r = fedgate("get", "/local/in/a.bin", str(tmp_path / "a"), "--json", env=env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["ok"] and summary["bytes"] == 300_000
    assert summary["files"][0]["checksum"] == "sha-256"
    assert r.stderr == ""
    r = fedgate("get", "/local/in/sub/b.txt", str(tmp_path / "b"), "-q", env=env)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert tok not in r.stdout + r.stderr


def test_cli_exit_codes(gw: Running, tree: Path, tmp_path: Path) -> None:
    env = {"FEDGATE_URL": gw.api, "FEDGATE_APIKEY": gw.key}
    assert fedgate("stat", "/local/in/nope", env=env).returncode == 3
    assert fedgate("stat", "ftp://x/y", env=env).returncode == 2
    assert fedgate("get", "/local/in", env=env).returncode == 2  # argparse: DEST missing
    assert fedgate("stat", "/local/in").returncode == 2  # no gateway URL
    assert fedgate("stat", "/local/in", env={"FEDGATE_URL": gw.api}).returncode == 4
    assert fedgate("ls", "/local/in/a.bin", env=env).returncode == 7  # not a directory
    r = fedgate("ls", "-l", "/local/in", env=env)
    assert r.returncode == 0 and "sub/" in r.stdout and "300000" in r.stdout
    r = fedgate("stat", "--json", "/local/in/a.bin", env=env)
    assert json.loads(r.stdout)["entry"]["size"] == 300_000
    # nothing listens there: network error after the retries
    r = fedgate(
        "stat", "/local/in", "--retries", "1", env={**env, "FEDGATE_URL": "http://127.0.0.1:9/rest"}
    )
    assert r.returncode == 6 and "gave up after 2 attempts" in r.stderr


def test_expired_token_gives_a_clear_message(gw: Running, tree: Path, tmp_path: Path) -> None:
    expired = _expired_token(gw)
    token_file = tmp_path / "tok"
    token_file.write_text(expired + "\n")
    env = {"FEDGATE_URL": gw.api, "BEARER_TOKEN_FILE": str(token_file)}
    r = fedgate("get", "/local/in/a.bin", str(tmp_path / "a"), env=env)
    assert r.returncode == 4
    assert "expired" in r.stderr and "$BEARER_TOKEN_FILE" in r.stderr
    assert "fresh token" in r.stderr and expired not in r.stderr
    assert not (tmp_path / "a").exists()
    r = fedgate("get", "/local/in/a.bin", str(tmp_path / "a"), "--json", env=env)
    assert json.loads(r.stdout)["error"]["exit_code"] == 4


def test_token_discovery_order(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "bt_u4242").write_text(" from-xdg\n")
    (tmp_path / "file").write_text("from-file\n")
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    assert discover_credential(env=env, uid=4242).value == "from-xdg"
    env["FEDGATE_APIKEY"] = "key"
    assert discover_credential(env=env, uid=4242).kind == "apikey"
    env["BEARER_TOKEN_FILE"] = str(tmp_path / "file")
    assert discover_credential(env=env, uid=4242).value == "from-file"
    env["BEARER_TOKEN"] = "from-env"
    assert discover_credential(env=env, uid=4242).value == "from-env"
    assert discover_credential("cli", env=env, uid=4242).source == "--token"
    assert discover_credential(apikey="k", env=env, uid=4242).headers() == {"apikey": "k"}
    assert "from-env" not in repr(discover_credential(env=env, uid=4242))
    assert discover_credential(env={"XDG_RUNTIME_DIR": str(tmp_path)}, uid=4242).kind in (
        "none",
        "token",  # a real /tmp/bt_u4242 on this machine
    )
    with pytest.raises(UsageError):
        discover_credential(env={"BEARER_TOKEN_FILE": str(tmp_path / "missing")})
    with pytest.raises(UsageError):
        discover_gateway(env={})
    assert discover_gateway(env={"FEDGATE_URL": "https://gw/rest/"}) == "https://gw/rest"
