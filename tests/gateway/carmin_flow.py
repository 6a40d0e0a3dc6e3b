"""The gateway's CARMIN face on every backend: one walk through every CARMIN action, and
a token's scope, through a real gateway (uvicorn) whose mount is a fresh folder on the
backend's real server. A backend runs it with one line, taking its fixtures class from
tests/backends.py (the same the adapter conformance suite takes)::

    class TestS3Carmin(S3Fixtures, CarminFlow): ...

The user's credential is stored the way VIP stores it (``PUT /user/externalKeys``), so
every request also goes through the key vault and back to the adapter's credential.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backends import MIB, Space
from tests.gateway.helpers import bearer, gateway_on, is_error, token
from tests.server import Running

OCTET = {"Content-Type": "application/octet-stream"}


def name_of(entry: dict[str, Any]) -> str:
    return str(entry["platformPath"]).rsplit("/", 1)[-1]


def check_carmin_actions(client: httpx.Client, mount: str, folder: str, size: int) -> None:
    """mkdir, raw and carmin+json PUT (a name with a space and an accent), list,
    properties, md5, content whole and ranged, mkdir conflict, recursive delete."""
    base = f"/path/{mount}/{folder}"
    data = bytes(range(256)) * (size // 256)
    r = client.put(f"{base}/sub")
    assert r.status_code == 201 and r.json()["isDirectory"] is True
    r = client.put(f"{base}/sub/data.bin", content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    body = {
        "base64Content": base64.b64encode(b"json body").decode(),
        "type": "File",
        "md5": hashlib.md5(b"json body").hexdigest(),
    }
    r = client.put(
        f"{base}/j name é.txt", json=body, headers={"Content-Type": "application/carmin+json"}
    )
    assert r.status_code == 201, r.text
    listing = client.get(f"{base}?action=list").json()
    assert sorted((name_of(e), e["isDirectory"]) for e in listing) == [
        ("j name é.txt", False),
        ("sub", True),
    ]
    props = client.get(f"{base}/sub/data.bin?action=properties").json()
    assert props["size"] == len(data) and props["isDirectory"] is False
    assert props["platformPath"] == f"/{mount}/{folder}/sub/data.bin"
    md5 = client.get(f"{base}/sub/data.bin?action=md5").json()["md5"]
    assert md5 == hashlib.md5(data).hexdigest()
    assert client.get(f"{base}/sub/data.bin?action=content").content == data
    start, end = len(data) // 3, len(data) // 3 + 99_999
    ranged = client.get(
        f"{base}/sub/data.bin?action=content", headers={"Range": f"bytes={start}-{end}"}
    )
    assert ranged.status_code == 206 and ranged.content == data[start : end + 1]
    assert ranged.headers["content-range"] == f"bytes {start}-{end}/{len(data)}"
    assert client.get(f"{base}/j name é.txt?action=content").content == b"json body"
    assert client.get(f"{base}/nope?action=exists").json() == {"exists": False}
    is_error(client.put(f"{base}/sub"), 409, 40901)
    assert client.delete(f"{base}/sub").status_code == 204
    is_error(client.get(f"{base}/sub/data.bin?action=properties"), 404, 40401)
    assert [name_of(e) for e in client.get(f"{base}?action=list").json()] == ["j name é.txt"]


class CarminFlow:
    """What every mount must do through the CARMIN API."""

    # Past S3's multipart threshold and Girder's chunk in the fixtures (5 MiB each).
    size = 6 * MIB

    @pytest.fixture
    def gw(self, space: Space, tmp_path: Path) -> Iterator[Running]:
        with gateway_on(space, tmp_path) as r:
            yield r

    @pytest.fixture
    def folder(self, gw: Running, space: Space) -> str:
        name = f"f-{uuid.uuid4().hex[:8]}"
        with gw.client() as c:
            assert c.put(f"/path/{space.type}/{name}").status_code == 201
        return name

    def test_carmin_actions(self, gw: Running, space: Space, folder: str) -> None:
        with gw.client() as c:
            check_carmin_actions(c, space.type, folder, self.size)

    def test_a_token_reaches_its_scope_and_nothing_more(
        self, gw: Running, space: Space, folder: str
    ) -> None:
        mount = space.type
        with gw.client() as c:
            assert c.put(f"/path/{mount}/{folder}/in").status_code == 201
            r = c.put(f"/path/{mount}/{folder}/in/a.txt", content=b"inside", headers=OCTET)
            assert r.status_code == 201, r.text
            r = c.put(f"/path/{mount}/{folder}/out.txt", content=b"outside", headers=OCTET)
            assert r.status_code == 201, r.text
        tok = token(gw, f"storage.read:/{mount}/{folder}/in")
        # Redirects are followed: a mount that can presign answers the GET with a 307.
        with httpx.Client(
            base_url=gw.api, headers=bearer(tok), timeout=30, follow_redirects=True
        ) as job:
            got = job.get(f"/path/{mount}/{folder}/in/a.txt?action=content")
            assert got.status_code == 200 and got.content == b"inside"
            is_error(job.get(f"/path/{mount}/{folder}/out.txt?action=content"), 403)
            r = job.put(f"/path/{mount}/{folder}/in/b.txt", content=b"x", headers=OCTET)
            is_error(r, 403)
            is_error(job.delete(f"/path/{mount}/{folder}/in/a.txt"), 403)
        with gw.client() as c:
            listing = c.get(f"/path/{mount}/{folder}/in?action=list").json()
            assert [name_of(e) for e in listing] == ["a.txt"]
            assert c.get(f"/path/{mount}/{folder}/in/a.txt?action=content").content == b"inside"
