"""The CARMIN data routes at their edges, over real HTTP: the virtual root (the list of
mounts a user may read), what may not be deleted, the ETag's form, and the audit row
each of them leaves."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import MountConfig
from tests.gateway.helpers import bearer, is_error, token
from tests.server import Running, local_settings, running


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    for name in ("hidden", "open"):
        (tmp_path / name).mkdir()
    mounts = (
        # Listed first: a mount the user may not read must not stop the listing.
        MountConfig(
            "hidden", "posix", {"root": str(tmp_path / "hidden")},
            read_users=("admin",), write_users=("admin",),
        ),
        MountConfig("open", "posix", {"root": str(tmp_path / "open")}),
    )  # fmt: skip
    with running(local_settings(tmp_path, mounts=mounts)) as r:
        yield r


@pytest.fixture
def bob(gw: Running) -> str:
    return gw.gateway.users.add_user("bob")[1]


def _audit(gw: Running, rid: str) -> dict[str, Any]:
    r = httpx.get(gw.api + "/audit", params={"request_id": rid}, headers={"apikey": gw.key})
    (row,) = r.json()
    return dict(row)


def test_the_root_lists_the_mounts_each_user_may_read(gw: Running, bob: str) -> None:
    mine = httpx.get(gw.api + "/path/?action=list", headers={"apikey": bob})
    assert mine.status_code == 200
    assert [p["platformPath"] for p in mine.json()] == ["/open"]
    assert all(p["isDirectory"] for p in mine.json())
    row = _audit(gw, mine.headers["x-request-id"])
    assert (row["result"], row["status"], row["path"]) == ("ok", 200, "/")
    admin = httpx.get(gw.api + "/path/?action=list", headers={"apikey": gw.key})
    assert [p["platformPath"] for p in admin.json()] == ["/hidden", "/open"]


def test_the_root_is_a_folder(gw: Running, bob: str) -> None:
    h = {"apikey": bob}
    props = httpx.get(gw.api + "/path/?action=properties", headers=h)
    assert props.status_code == 200
    body = props.json()
    assert body["platformPath"] == "/" and body["isDirectory"] is True
    assert body["lastModificationDate"] > 1_700_000_000 and "size" not in body
    assert httpx.get(gw.api + "/path/?action=exists", headers=h).json() == {"exists": True}
    r = httpx.get(gw.api + "/path/?action=content", headers=h)
    is_error(r, 409, 40903)
    assert r.json()["errorMessage"] == "/ is a directory (the list of mounts)"


@pytest.mark.parametrize("path", ["", "open", "open/"])
def test_a_mount_or_the_root_cannot_be_deleted(gw: Running, path: str) -> None:
    r = httpx.delete(gw.api + "/path/" + path, headers={"apikey": gw.key})
    is_error(r, 403, None)
    assert r.json()["errorMessage"] == "a mount or the root cannot be deleted"
    assert (gw.data.parent / "open").is_dir()


def test_a_delete_is_audited(gw: Running) -> None:
    (gw.data.parent / "open" / "f").write_bytes(b"x")
    r = httpx.delete(gw.api + "/path/open/f", headers={"apikey": gw.key})
    assert r.status_code == 204
    row = _audit(gw, r.headers["x-request-id"])
    assert (row["result"], row["status"], row["path"], row["operation"]) == (
        "ok",
        204,
        "/open/f",
        "delete",
    )
    assert not (gw.data.parent / "open" / "f").exists()


def test_the_etag_is_mtime_in_microseconds_and_size_in_hex(gw: Running) -> None:
    f = gw.data.parent / "open" / "f"
    f.write_bytes(b"12345")
    os.utime(f, ns=(1_700_000_000_123_456_000, 1_700_000_000_123_456_000))
    r = httpx.head(gw.api + "/path/open/f?action=content", headers={"apikey": gw.key})
    assert r.headers["etag"] == f'"{1_700_000_000_123_456:x}-5"'


@pytest.mark.parametrize(
    ("scope", "listed"),
    [
        ("storage.read:/open", ["open"]),
        ("storage.read:/hidden storage.read:/open", ["hidden", "open"]),
        ("storage.read:/open/sub", []),  # a folder inside: not the mount itself
        ("storage.create:/open", []),  # no read
    ],
)
def test_the_root_lists_the_mounts_a_token_may_read_whole(
    gw: Running, scope: str, listed: list[str]
) -> None:
    """On every route that lists the mounts: the CARMIN root and the WebDAV door's."""
    h = bearer(token(gw, scope))
    carmin = httpx.get(gw.api + "/path/?action=list", headers=h)
    assert [p["platformPath"] for p in carmin.json()] == [f"/{m}" for m in listed]
    dav = httpx.request("PROPFIND", f"{gw.url}/webdav/", headers={**h, "Depth": "1"})
    assert dav.status_code == 207
    found = sorted(set(re.findall(r"/webdav/(hidden|open)/", dav.text)))
    assert found == listed
    index = httpx.get(f"{gw.url}/webdav/", headers=h)
    assert sorted(set(re.findall(r"/webdav/(hidden|open)/", index.text))) == listed
