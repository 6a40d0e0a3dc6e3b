"""The WebDAV face on every backend: MKCOL, PUT (past S3's multipart threshold), a
replace, an empty file, PROPFIND at depth 0 and 1, GET whole and ranged, HEAD with an
adler32 Want-Digest, MOVE, a cut upload that must leave the old bytes, DELETE of the
tree — through a real gateway whose mount is a fresh folder of the backend's real
server. A backend runs it with one line, taking its fixtures class from
tests/backends.py (the same the adapter conformance suite and the CARMIN flow take)::

    class TestS3Dav(S3Fixtures, DavFlow): ...
"""

from __future__ import annotations

import socket
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
import pytest

from tests.backends import MIB, Space
from tests.gateway.helpers import gateway_on
from tests.server import Running


def _hrefs(r: httpx.Response) -> set[str]:
    assert r.status_code == 207, r.text
    return {e.text or "" for e in ElementTree.fromstring(r.content).iter("{DAV:}href")}


def _cut_put(gw: Running, path: str) -> None:
    """Half a body, then the connection dropped."""
    host, port = urlsplit(gw.url).netloc.split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\n"
            f"Content-Length: {4 * MIB}\r\n\r\n".encode()
            + b"z" * MIB
        )


class DavFlow:
    """What every mount must do through the WebDAV door."""

    @pytest.fixture
    def gw(self, space: Space, tmp_path: Path) -> Iterator[Running]:
        with gateway_on(space, tmp_path) as r:
            yield r

    def test_walk(self, gw: Running, space: Space) -> None:
        mount = space.type
        h = {"apikey": gw.key}
        folder = f"w-{uuid.uuid4().hex[:8]}"
        base = f"{gw.url}/webdav/{mount}/{folder}"
        path = f"/webdav/{mount}/{folder}"
        data = bytes(range(256)) * (6 * MIB // 256 + 3)
        with httpx.Client(headers=h, timeout=60) as c:
            assert c.request("MKCOL", base).status_code == 201
            assert c.request("MKCOL", base).status_code == 405
            assert c.request("MKCOL", base + "/no/parent").status_code == 409
            assert c.put(base + "/big.bin", content=data).status_code == 201
            assert c.put(base + "/small.txt", content=b"one").status_code == 201
            assert c.put(base + "/small.txt", content=b"two!").status_code == 204
            assert c.put(base + "/empty", content=b"").status_code == 201
            assert c.request("MKCOL", base + "/sub").status_code == 201
            one = _hrefs(c.request("PROPFIND", base + "/", headers={"Depth": "1"}))
            assert one == {
                f"{path}/",
                f"{path}/big.bin",
                f"{path}/small.txt",
                f"{path}/empty",
                f"{path}/sub/",
            }
            assert _hrefs(c.request("PROPFIND", base + "/big.bin", headers={"Depth": "0"})) == {
                f"{path}/big.bin"
            }
            assert c.get(base + "/big.bin").content == data
            r = c.get(base + "/big.bin", headers={"Range": "bytes=1000-1999999"})
            assert r.status_code == 206
            assert r.content == data[1000:2_000_000]
            assert c.get(base + "/empty").content == b""
            assert c.get(base + "/small.txt").content == b"two!"
            r = c.head(base + "/big.bin", headers={"Want-Digest": "adler32"})
            assert r.headers["Content-Length"] == str(len(data))
            assert r.headers["Digest"] == f"adler32={zlib.adler32(data) & 0xFFFFFFFF:08x}"
            _cut_put(gw, f"{path}/small.txt")
            _cut_put(gw, f"{path}/never.bin")
            moved = {"Destination": f"{path}/sub/moved.txt"}
            assert c.request("MOVE", base + "/small.txt", headers=moved).status_code == 201
            assert c.get(base + "/sub/moved.txt").content == b"two!"
            assert c.get(base + "/small.txt").status_code == 404
            # A cut upload may still be aborting in the gateway: whatever it left must
            # never be visible as the file.
            assert c.get(base + "/never.bin").status_code == 404
            assert c.delete(base).status_code == 204
            assert c.request("PROPFIND", base, headers={"Depth": "0"}).status_code == 404
