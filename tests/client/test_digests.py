"""The job client checks downloads with the gateway's sha-256 (Repr-Digest), also when the
gateway redirects it to a storage, and sends Content-Digest with its uploads."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from gateway.client import ChecksumMismatch, Client
from tests.client.helpers import Recorder, proxy, send, send_json
from tests.server import Running

DATA = os.urandom(2 * 1024 * 1024 + 3)


def repr_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def redirecting_gateway(storage_url: str, announced: str) -> Recorder:
    """Answers like fedgate for one file: a 307 to the storage carrying ``announced``."""

    def path(h: BaseHTTPRequestHandler) -> None:
        if "action=properties" in h.path:
            send_json(
                h,
                {
                    "platformPath": "/m/f",
                    "isDirectory": False,
                    "size": len(DATA),
                    "lastModificationDate": 0,
                },
            )
        else:
            send(h, 307, Location=f"{storage_url}/blob?X-Amz-Signature=s", Repr_Digest=announced)

    return Recorder({"/rest/path/m/f": path})


@pytest.fixture
def storage_host() -> Iterator[Recorder]:
    def blob(h: BaseHTTPRequestHandler) -> None:
        # A storage's own Repr-Digest is not the gateway's word: it must be ignored.
        send(h, 200, DATA, ETag='"v1"', Repr_Digest=repr_digest(b"storage says"))

    r = Recorder({"/blob": blob})
    yield r
    r.close()


def test_a_redirected_download_is_checked_with_the_gateways_sha256(
    storage_host: Recorder, tmp_path: Path
) -> None:
    gw = redirecting_gateway(storage_host.url, repr_digest(DATA))
    try:
        with Client(gw.url + "/rest", "job-token") as c:
            [res] = c.get("/m/f", tmp_path / "f")
    finally:
        gw.close()
    assert (tmp_path / "f").read_bytes() == DATA
    assert res.redirected and res.checksum == "sha-256"
    assert res.sha256 == hashlib.sha256(DATA).hexdigest()
    asked = [h for _, p, h in gw.requests if "action=content" in p]
    assert asked and all(h.get("Want-Repr-Digest") == "sha-256=10" for h in asked)
    assert not any("action=md5" in p for _, p, _ in gw.requests)  # no second request


def test_a_redirected_download_that_does_not_match_leaves_nothing(
    storage_host: Recorder, tmp_path: Path
) -> None:
    gw = redirecting_gateway(storage_host.url, repr_digest(b"another file"))
    out = tmp_path / "out"
    out.mkdir()
    try:
        with Client(gw.url + "/rest", "job-token") as c, pytest.raises(ChecksumMismatch) as err:
            c.get("/m/f", out / "f")
    finally:
        gw.close()
    assert "sha-256" in err.value.message and "nothing written" in err.value.message
    assert list(out.iterdir()) == []


def test_a_corrupted_body_fails_the_sha256_check(gw: Running, tmp_path: Path) -> None:
    (gw.data / "big.bin").write_bytes(DATA)
    port = int(gw.url.rsplit(":", 1)[1])
    out = tmp_path / "out"
    out.mkdir()
    with (
        proxy(port, times=1, corrupt_at=1_500_000) as p,
        Client(p.url + "/rest", apikey=gw.key) as c,
        pytest.raises(ChecksumMismatch) as err,
    ):
        c.get("/local/big.bin", out / "big.bin")
    assert "sha-256" in err.value.message
    assert list(out.iterdir()) == []


def test_put_sends_content_digest_and_checks_the_stored_one(gw: Running, tmp_path: Path) -> None:
    src = tmp_path / "up.bin"
    src.write_bytes(DATA)
    port = int(gw.url.rsplit(":", 1)[1])
    with proxy(port) as p, Client(p.url + "/rest", apikey=gw.key) as c:
        [res] = c.put(src, "/local/up.bin")
        sent = bytes(p.seen).lower()
    assert f"content-digest: {repr_digest(DATA)}".lower().encode() in sent
    assert res.checksum == "sha-256" and res.sha256 == hashlib.sha256(DATA).hexdigest()
    assert (gw.data / "up.bin").read_bytes() == DATA
    assert b"action=md5" not in sent  # the 201's Repr-Digest said what was stored


def test_a_file_the_gateway_never_hashed_is_checked_with_sha256_too(
    gw: Running, tmp_path: Path
) -> None:
    (gw.data / "outside.bin").write_bytes(DATA)  # not uploaded through the gateway
    port = int(gw.url.rsplit(":", 1)[1])
    with proxy(port) as p, Client(p.url + "/rest", apikey=gw.key) as c:
        [res] = c.get("/local/outside.bin", tmp_path / "o.bin")
        sent = bytes(p.seen).lower()
    assert (tmp_path / "o.bin").read_bytes() == DATA
    assert res.checksum == "sha-256" and res.sha256 == hashlib.sha256(DATA).hexdigest()
    assert b"head /rest/path/local/outside.bin?action=content" in sent  # asked beside it
    assert b"action=md5" not in sent
