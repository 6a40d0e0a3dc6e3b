"""Broken connections, corruption and redirects: a TCP proxy in front of the real gateway
cuts or corrupts an answer; a second HTTP server plays the storage a redirect points to."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.client import ChecksumMismatch, Client, NetworkError
from gateway.client.transfer import part_paths
from tests.client.helpers import Recorder, fedgate, proxy, send, send_json
from tests.server import Running

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture
def blob(gw: Running) -> bytes:
    data = os.urandom(SIZE)
    (gw.data / "big.bin").write_bytes(data)
    return data


def port_of(gw: Running) -> int:
    return int(urlsplit(gw.url).port or 0)


def test_interrupted_download_resumes_with_range(gw: Running, blob: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "big.bin"
    with (
        proxy(port_of(gw), times=1, cut_after=1_000_000) as p,
        Client(p.url + "/rest", apikey=gw.key, backoff=0.01) as c,
    ):
        [res] = c.get("/local/big.bin", dest)
        sent = bytes(p.seen)
    assert dest.read_bytes() == blob
    assert p.faults.fired == 1
    # the first try's body, minus headers and at most one partial read chunk
    # a clean cut loses nothing: every body byte before it (1e6 minus the headers) is kept
    assert 1_000_000 - 2000 < res.resumed_from < 1_000_000
    assert f"range: bytes={res.resumed_from}-".encode() in sent.lower()
    assert b"if-range: " in sent.lower()
    assert res.checksum == "sha-256"


def test_a_later_run_resumes_the_part_file(gw: Running, blob: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "big.bin"
    env = {"FEDGATE_APIKEY": gw.key}
    with proxy(port_of(gw), times=10, cut_after=2_000_000) as p:
        r = fedgate(
            "get",
            "/local/big.bin",
            str(dest),
            "--retries",
            "0",
            "--gateway",
            p.url + "/rest",
            env=env,
        )
    assert r.returncode == 6, r.stderr
    part, meta = part_paths(dest)
    kept = part.stat().st_size
    assert not dest.exists() and 1_000_000 < kept < 2_000_000 and meta.exists()
    r = fedgate("get", "/local/big.bin", str(dest), "--json", "--gateway", gw.api, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["files"][0]["resumed_from"] == kept
    assert dest.read_bytes() == blob
    assert not part.exists() and not meta.exists()


def test_changed_file_restarts_the_download(gw: Running, blob: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "big.bin"
    part, meta = part_paths(dest)
    part.write_bytes(b"stale bytes of an older version")
    meta.write_text('{"path": "/local/big.bin", "validator": "\\"not-the-etag\\""}')
    with Client(gw.api, apikey=gw.key) as c:
        [res] = c.get("/local/big.bin", dest)
    assert dest.read_bytes() == blob and res.resumed_from == 0


def test_corrupted_byte_is_caught_and_nothing_is_left(
    gw: Running, blob: bytes, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "big.bin"
    with (
        proxy(port_of(gw), times=1, corrupt_at=2_000_000) as p,
        Client(p.url + "/rest", apikey=gw.key) as c,
        pytest.raises(ChecksumMismatch) as err,
    ):
        c.get("/local/big.bin", dest)
    assert "nothing written" in err.value.message and err.value.exit_code == 5
    assert list(out.iterdir()) == []
    with proxy(port_of(gw), times=1, corrupt_at=2_000_000) as p:
        r = fedgate(
            "get",
            "/local/big.bin",
            str(dest),
            "--gateway",
            p.url + "/rest",
            env={"FEDGATE_APIKEY": gw.key},
        )
    assert r.returncode == 5 and "sha-256" in r.stderr
    assert list(out.iterdir()) == []


def test_gives_up_after_bounded_retries(gw: Running, blob: bytes, tmp_path: Path) -> None:
    dest = tmp_path / "big.bin"
    with (
        proxy(port_of(gw), times=100, cut_after=10) as p,
        Client(p.url + "/rest", apikey=gw.key, retries=3, backoff=0.01) as c,
        pytest.raises(NetworkError) as err,
    ):
        c.get("/local/big.bin", dest)
    assert "gave up after 4 attempts" in err.value.message and p.faults.fired == 4
    assert not dest.exists()


# --- redirects: a fake gateway and a fake storage -------------------------------------

DATA = b"0123456789" * 10_000


@pytest.fixture
def storage_host() -> Iterator[Recorder]:
    def blob(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, DATA, ETag='"v1"', Content_Type="application/octet-stream")

    r = Recorder({"/blob": blob})
    yield r
    r.close()


@pytest.fixture
def fake_gateway(storage_host: Recorder) -> Iterator[Recorder]:
    """Answers like fedgate for one file whose content is a 307 to the storage host."""

    def path(h: BaseHTTPRequestHandler) -> None:
        action = h.path.split("action=", 1)[-1]
        if action == "properties":
            send_json(
                h,
                {
                    "platformPath": "/m/f",
                    "isDirectory": False,
                    "size": len(DATA),
                    "lastModificationDate": 0,
                },
            )
        elif action == "md5":
            send_json(h, {"md5": hashlib.md5(DATA).hexdigest()})
        else:
            send(h, 307, Location=f"{storage_host.url}/blob?X-Amz-Signature=secret")

    r = Recorder({"/rest/path/m/f": path})
    yield r
    r.close()


def test_redirect_is_followed_without_the_token(
    fake_gateway: Recorder, storage_host: Recorder, tmp_path: Path
) -> None:
    with Client(fake_gateway.url + "/rest", "job-token") as c:
        [res] = c.get("/m/f", tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == DATA and res.redirected
    assert storage_host.requests, "the storage host was never asked"
    for _, _, headers in storage_host.requests:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert "authorization" not in lowered and "apikey" not in lowered
        assert "job-token" not in str(headers)
    gw_headers = [h for _, _, h in fake_gateway.requests]
    assert all(h.get("Authorization") == "Bearer job-token" for h in gw_headers)


def test_proxy_mode_asks_the_gateway_to_stream(gw: Running, blob: bytes, tmp_path: Path) -> None:
    with proxy(port_of(gw)) as p, Client(p.url + "/rest", apikey=gw.key, redirect=False) as c:
        c.get("/local/big.bin", tmp_path / "b")
        assert b"x-fedgate-redirect: never" in bytes(p.seen).lower()
    assert (tmp_path / "b").read_bytes() == blob


def test_a_tree_of_files_shares_one_download_connection(gw: Running, tmp_path: Path) -> None:
    files = {f"f{i}.bin": os.urandom(1000 * i) for i in range(8)}
    (gw.data / "many").mkdir()
    for name, data in files.items():
        (gw.data / "many" / name).write_bytes(data)
    with proxy(port_of(gw)) as p, Client(p.url + "/rest", apikey=gw.key) as c:
        results = c.get("/local/many", tmp_path / "many")
        connections = p.connections
    assert len(results) == 9 and all(r.checksum == "sha-256" for r in results[1:])
    for name, data in files.items():
        assert (tmp_path / "many" / name).read_bytes() == data
    # the JSON calls keep theirs (md5 runs alongside: two), the bodies one: not one per file
    assert connections <= 4


def test_no_checksum_neither_computes_nor_compares(
    gw: Running, blob: bytes, tmp_path: Path
) -> None:
    with (
        proxy(port_of(gw)) as p,
        Client(p.url + "/rest", apikey=gw.key, verify_checksums=False) as c,
    ):
        [res] = c.get("/local/big.bin", tmp_path / "b")
        assert b"action=md5" not in bytes(p.seen)
        assert b"want-repr-digest" not in bytes(p.seen).lower()
    assert (tmp_path / "b").read_bytes() == blob
    assert res.checksum == "none" and res.sha256 is None and res.md5 is None and res.bytes == SIZE
