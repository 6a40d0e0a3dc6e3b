"""COPY between every two backends `make test` starts, on one gateway with a mount per
backend (tests/webdav/backends.py): S3 (SeaweedFS), Girder, grid SE over root:// and http
(XRootD), iRODS (the protocol test server in tests/irods_server — no real iRODS can be
installed here), and POSIX. The walk through every WebDAV method on each backend is
tests/webdav/test_dav_backends.py."""

from __future__ import annotations

import os
import uuid

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
