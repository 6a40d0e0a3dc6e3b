"""One walk through every CARMIN action on a mount, for the backend gateway tests."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx

from tests.gateway.helpers import is_error

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
