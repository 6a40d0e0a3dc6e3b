"""Path escapes, interrupted uploads and other ways to lose data or get out of a mount."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import httpx
import pytest

from adapters.posix import STAGING
from tests.events import request_log
from tests.gateway.helpers import is_error, raw_request
from tests.server import Running


@pytest.mark.parametrize(
    "raw_path",
    [
        "/rest/path/local/../secret.txt",
        "/rest/path/local/%2e%2e/secret.txt",
        "/rest/path/local/%2E%2E/secret.txt",
        "/rest/path/local/..%2fsecret.txt",
        "/rest/path/local/a%2f..%2f..%2fsecret.txt",
        "/rest/path/local/a%5c..%5csecret.txt",
        "/rest/path/local/a\\..\\secret.txt",
        "/rest/path/local/x%00y",
        "/rest/path/local//secret.txt",
        "/rest/path/local/./secret.txt",
        "/rest/path/local/trailingdot.",
        "/rest/path/local/" + "a" * 256,
        "/rest/path/local/" + "/".join(["d"] * 2100),
        "/rest/path/local/e%CC%81",  # NFD "é": the NFC twin is the only accepted form
    ],
)
def test_path_tricks_are_refused(gw: Running, raw_path: str) -> None:
    (gw.data.parent / "secret.txt").write_text("outside the mount")
    request = (
        f"GET {raw_path}?action=content HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    answer = raw_request(gw, request)
    status_line = answer.split(b"\r\n", 1)[0]
    assert b" 400 " in status_line or b" 404 " in status_line, answer[:300]
    assert b"outside the mount" not in answer
    put = (
        f"PUT {raw_path} HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\nContent-Type: "
        "application/octet-stream\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil"
    ).encode()
    answer = raw_request(gw, put)
    assert b" 201 " not in answer.split(b"\r\n", 1)[0]
    assert (gw.data.parent / "secret.txt").read_text() == "outside the mount"


def test_symlink_out_of_the_mount_is_denied(gw: Running, client: httpx.Client) -> None:
    (gw.data.parent / "secret.txt").write_text("outside")
    os.symlink(gw.data.parent / "secret.txt", gw.data / "link")
    is_error(client.get("/path/local/link?action=content"), 403, 40302)
    r = client.put(
        "/path/local/link",
        content=b"overwrite",
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 403
    assert (gw.data.parent / "secret.txt").read_text() == "outside"


def _staging_files(data: Path) -> list[Path]:
    return [p for p in (data / STAGING).rglob("*") if p.is_file()]


def test_interrupted_upload_keeps_the_old_file(gw: Running) -> None:
    (gw.data / "precious").write_bytes(b"good version")
    head = (
        f"PUT /rest/path/local/precious HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
    ).encode()
    with request_log() as log:
        raw_request(gw, head + b"x" * 3_000_000, read=False)  # then the connection drops
        log.wait_for("PUT", "/rest/path/local/precious")  # the gateway is done with it
        assert (gw.data / "precious").read_bytes() == b"good version"
        assert _staging_files(gw.data) == []
        raw_request(gw, head.replace(b"precious", b"fresh") + b"y" * 1000, read=False)
        log.wait_for("PUT", "/rest/path/local/fresh")
    assert not (gw.data / "fresh").exists()
    assert _staging_files(gw.data) == []


def test_declared_length_longer_than_body_writes_nothing(gw: Running) -> None:
    request = (
        f"PUT /rest/path/local/short HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n"
    ).encode() + b"only ten b"
    host, port = gw.url.removeprefix("http://").split(":")
    with request_log() as log, socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)  # half-close: the body ends early
        with contextlib.suppress(OSError):
            s.recv(1000)
        log.wait_for("PUT", "/rest/path/local/short")
    assert not (gw.data / "short").exists()


def test_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    from tests.server import local_settings, running

    with running(local_settings(tmp_path, max_upload_bytes=1000)) as gw, gw.client() as c:
        octet = {"Content-Type": "application/octet-stream"}
        is_error(c.put("/path/local/big", content=b"x" * 5000, headers=octet), 413, 41301)

        def stream():  # type: ignore[no-untyped-def]
            for _ in range(5):
                yield b"y" * 1000

        is_error(c.put("/path/local/big", content=stream(), headers=octet), 413, 41301)
        assert not (gw.data / "big").exists()
        assert _staging_files(gw.data) == []


def test_download_cut_midway_does_not_look_complete(gw: Running, client: httpx.Client) -> None:
    """A file truncated while it streams: the client must see an error, not a short file."""
    big = gw.data / "shrinking"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    with client.stream("GET", "/path/local/shrinking?action=content") as r:
        assert r.status_code == 200
        expected = int(r.headers["content-length"])
        it = r.iter_raw(65536)
        got = len(next(it))
        os.truncate(big, 1024 * 1024)  # the backend file loses its tail mid-transfer
        with pytest.raises(httpx.HTTPError):
            for chunk in it:
                got += len(chunk)
        assert got < expected
