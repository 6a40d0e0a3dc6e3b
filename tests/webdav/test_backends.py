"""The WebDAV face's walk over every backend `make test` starts, against its real server:
S3 (SeaweedFS), Girder, grid SE over root:// and http (XRootD), iRODS (the protocol test
server in tests/irods_server — no real iRODS can be installed here), and POSIX.

The same walk runs on each mount: MKCOL, PUT (past S3's multipart threshold), a replace,
an empty file, PROPFIND at depth 0 and 1, GET whole and ranged, HEAD with an adler32
Want-Digest, MOVE, a cut upload that must leave the old bytes, DELETE of the tree."""

from __future__ import annotations

import os
import socket
import uuid
import zlib
from urllib.parse import urlsplit
from xml.etree import ElementTree

import httpx
import pytest

from tests.server import Running

# The module-scoped gateway with one mount per backend, and the iRODS server it uses.
from tests.webdav.backends import BACKENDS, MIB, every_backend, irods  # noqa: F401


@pytest.fixture
def gw(request: pytest.FixtureRequest) -> Running:
    """tests/webdav/backends.py's gateway (module-scoped: started once)."""
    running: Running = request.getfixturevalue("every_backend")
    return running


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


@pytest.mark.parametrize("mount", BACKENDS)
def test_walk(gw: Running, mount: str) -> None:
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


@pytest.mark.parametrize("source", BACKENDS)
def test_copy_to_every_backend(gw: Running, source: str) -> None:
    """COPY from each backend to each backend (files, and a folder to one of them): the
    bytes move inside the gateway and arrive whole."""
    h = {"apikey": gw.key}
    data = os.urandom(700_000)
    name = f"c-{uuid.uuid4().hex[:8]}"
    with httpx.Client(headers=h, timeout=60) as c:
        assert c.request("MKCOL", f"{gw.url}/webdav/{source}/{name}").status_code == 201
        assert c.put(f"{gw.url}/webdav/{source}/{name}/f.bin", content=data).status_code == 201
        for target in BACKENDS:
            dest = {"Destination": f"/webdav/{target}/{name}-from-{source}.bin"}
            r = c.request("COPY", f"{gw.url}/webdav/{source}/{name}/f.bin", headers=dest)
            assert r.status_code == 201, (target, r.text)
            got = c.get(f"{gw.url}/webdav/{target}/{name}-from-{source}.bin")
            assert got.content == data, target
            assert c.delete(f"{gw.url}/webdav/{target}/{name}-from-{source}.bin").status_code == 204
        folder_dest = {"Destination": f"/webdav/posix/{name}-tree-{source}"}
        r = c.request("COPY", f"{gw.url}/webdav/{source}/{name}", headers=folder_dest)
        assert r.status_code == 201, r.text
        assert c.get(f"{gw.url}/webdav/posix/{name}-tree-{source}/f.bin").content == data
        c.delete(f"{gw.url}/webdav/{source}/{name}")
