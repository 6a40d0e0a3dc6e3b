"""Symbolic links already on a POSIX mount never lead a token out of its scope.

The tree: ``/local/a`` is the token's, ``/local/b`` is not. ``a/link -> ../b`` and
``a/flink -> ../b/secret.txt`` lead out of the scope, ``a/inner -> x`` stays inside,
``a/loop -> .`` and ``a/up -> ..`` loop, ``a/out`` leaves the mount. Every route is tried
through the links, and the file system is checked afterwards, not only the status.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import bearer, is_error, tar_gz, token, upload_data
from tests.server import Running

OCTET = {"Content-Type": "application/octet-stream"}
CARMIN_JSON = {"Content-Type": "application/carmin+json"}


@pytest.fixture
def tree(gw: Running, tmp_path: Path) -> Path:
    data = gw.data
    (data / "a" / "x").mkdir(parents=True)
    (data / "a" / "in.txt").write_text("mine")
    (data / "a" / "x" / "f.txt").write_text("inside")
    (data / "b" / "sub").mkdir(parents=True)
    (data / "b" / "secret.txt").write_text("b's secret")
    (data / "b" / "sub" / "deep.txt").write_text("b's deep secret")
    (tmp_path / "outside.txt").write_text("not in the mount")
    os.symlink("../b", data / "a" / "link")
    os.symlink("../b/secret.txt", data / "a" / "flink")
    os.symlink("x", data / "a" / "inner")
    os.symlink(".", data / "a" / "loop")
    os.symlink("..", data / "a" / "up")
    os.symlink(tmp_path, data / "a" / "out")
    return data


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under root (links not followed) with its bytes (None: a folder/link)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = None if p.is_dir() or p.is_symlink() else p.read_bytes()
    return out


@pytest.fixture
def reader(gw: Running, tree: Path) -> httpx.Client:
    tok = token(gw, "storage.read:/local/a")
    return httpx.Client(base_url=gw.api, headers=bearer(tok), timeout=30)


@pytest.fixture
def writer(gw: Running, tree: Path) -> httpx.Client:
    tok = token(gw, "storage.read:/local/a storage.modify:/local/a")
    return httpx.Client(base_url=gw.api, headers=bearer(tok), timeout=30)


@pytest.mark.parametrize("action", ["content", "properties", "md5", "exists", "list"])
@pytest.mark.parametrize(
    "path", ["a/link", "a/link/secret.txt", "a/link/sub", "a/flink", "a/up/b/secret.txt"]
)
def test_reads_through_a_link_out_of_scope_are_refused(
    reader: httpx.Client, action: str, path: str
) -> None:
    r = reader.get(f"/path/local/{path}", params={"action": action})
    assert r.status_code == 403, (path, action, r.text)
    assert b"b's" not in r.content and "/local/b" not in r.text  # nor where the link leads


def test_the_same_paths_are_out_of_scope_without_links(reader: httpx.Client) -> None:
    """The token itself: b is refused by path; links only must not change that."""
    is_error(reader.get("/path/local/b/secret.txt", params={"action": "content"}), 403)


def test_links_inside_the_scope_still_work(reader: httpx.Client) -> None:
    r = reader.get("/path/local/a/inner/f.txt", params={"action": "content"})
    assert r.status_code == 200 and r.content == b"inside"
    r = reader.get("/path/local/a/loop/in.txt", params={"action": "content"})
    assert r.status_code == 200 and r.content == b"mine"


def test_listing_hides_links_out_of_scope(reader: httpx.Client) -> None:
    r = reader.get("/path/local/a", params={"action": "list"})
    assert r.status_code == 200, r.text
    names = sorted(p["platformPath"].rsplit("/", 1)[-1] for p in r.json())
    # link, flink and up lead out of /local/a; out leaves the mount.
    assert names == ["in.txt", "inner", "loop", "x"]


def test_an_api_key_follows_links_inside_the_mount(gw: Running, tree: Path) -> None:
    """The user holds the whole mount: links inside it behave as before."""
    with gw.client() as c:
        r = c.get("/path/local/a/link/secret.txt", params={"action": "content"})
        assert r.status_code == 200 and r.content == b"b's secret"
        names = {p["platformPath"] for p in c.get("/path/local/a?action=list").json()}
        assert "/local/a/link" in names and "/local/a/out" not in names


def _tar_names(body: bytes) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f is not None else None
    return out


def test_directory_download_neither_leaves_the_scope_nor_loops(reader: httpx.Client) -> None:
    r = reader.get("/path/local/a", params={"action": "content"})
    assert r.status_code == 200, r.text
    members = _tar_names(r.content)
    assert members == {
        "a": None,
        "a/in.txt": b"mine",
        "a/x": None,
        "a/x/f.txt": b"inside",
        # inner and loop lead inside the folder being archived: their files are there
        # under their own names already, and following loop would never end.
    }
    assert not any(b"secret" in (v or b"") for v in members.values())


def test_directory_download_through_a_link_in_scope(gw: Running, tree: Path) -> None:
    """A link to another folder the token may read is followed once."""
    os.symlink("../../b/sub", tree / "a" / "x" / "to-sub")
    os.symlink("../..", tree / "b" / "sub" / "back")  # from b/sub back to the root
    tok = token(gw, "storage.read:/local/a storage.read:/local/b/sub")
    r = httpx.get(f"{gw.api}/path/local/a/x?action=content", headers=bearer(tok), timeout=30)
    assert r.status_code == 200, r.text
    assert _tar_names(r.content) == {
        "x": None,
        "x/f.txt": b"inside",
        "x/to-sub": None,
        "x/to-sub/deep.txt": b"b's deep secret",
    }


def test_an_endless_loop_of_links_is_bounded(gw: Running, tree: Path) -> None:
    """Two loops in one folder would double the walk at each level (2**depth) if links
    were followed into the tree being archived: the walk enters each target once."""
    os.symlink(".", tree / "a" / "x" / "again")
    os.symlink("..", tree / "a" / "x" / "parent")
    with gw.client() as c:  # the whole mount readable: only the loop rule applies
        r = c.get("/path/local/a?action=content")
        assert r.status_code == 200, r.text
        names = set(_tar_names(r.content))
    # again, parent, inner, loop and up lead into the folder or to a folder holding it;
    # link leads to b, walked once.
    assert names == {
        "a",
        "a/in.txt",
        "a/x",
        "a/x/f.txt",
        "a/link",
        "a/link/secret.txt",
        "a/link/sub",
        "a/link/sub/deep.txt",
        "a/flink",
    }


def test_writes_through_a_link_out_of_scope_are_refused(gw: Running, writer: httpx.Client) -> None:
    before = snapshot(gw.data / "b")
    put = writer.put("/path/local/a/link/new.txt", content=b"planted", headers=OCTET)
    is_error(put, 403)
    is_error(writer.put("/path/local/a/link/newdir"), 403)  # mkdir
    is_error(
        writer.put(
            "/path/local/a/link/f.json", content=upload_data(b"planted"), headers=CARMIN_JSON
        ),
        403,
    )
    archive = upload_data(tar_gz({"planted.txt": b"planted"}), "Archive")
    is_error(writer.put("/path/local/a/link/sub", content=archive, headers=CARMIN_JSON), 403)
    is_error(writer.put("/path/local/a/link", content=archive, headers=CARMIN_JSON), 403)
    put = writer.put("/path/local/a/link/secret.txt", content=b"overwritten", headers=OCTET)
    is_error(put, 403)
    is_error(writer.delete("/path/local/a/link/secret.txt"), 403)
    is_error(writer.delete("/path/local/a/link/sub"), 403)
    assert snapshot(gw.data / "b") == before


def test_deleting_a_link_removes_the_link_only(gw: Running, writer: httpx.Client) -> None:
    before = snapshot(gw.data / "b")
    assert writer.delete("/path/local/a/link").status_code == 204
    assert not os.path.lexists(gw.data / "a" / "link")
    assert snapshot(gw.data / "b") == before  # no rmtree through the link


def test_replacing_a_file_link_replaces_the_link_only(gw: Running, writer: httpx.Client) -> None:
    r = writer.put("/path/local/a/flink", content=b"my own file now", headers=OCTET)
    assert r.status_code == 201, r.text
    assert not (gw.data / "a" / "flink").is_symlink()
    assert (gw.data / "a" / "flink").read_bytes() == b"my own file now"
    assert (gw.data / "b" / "secret.txt").read_text() == "b's secret"


def test_links_out_of_the_mount_are_never_followed(gw: Running, tree: Path) -> None:
    with gw.client() as c:  # even for the mount's owner
        is_error(c.get("/path/local/a/out/outside.txt?action=content"), 403)
        is_error(c.get("/path/local/a/out?action=list"), 403)
        r = c.get("/path/local/a?action=content")
        assert not any("outside" in n for n in _tar_names(r.content))
        is_error(c.put("/path/local/a/out/planted", content=b"x", headers=OCTET), 403)
    assert not (Path(os.readlink(tree / "a" / "out")) / "planted").exists()


# --- the WebDAV door: the same operations, so the same rule -----------------------------------


def test_the_webdav_door_does_not_follow_links_out_of_scope(gw: Running, tree: Path) -> None:
    tok = token(gw, "storage.read:/local/a storage.modify:/local/a")
    before = snapshot(gw.data / "b")
    with httpx.Client(base_url=f"{gw.url}/webdav/local", headers=bearer(tok), timeout=30) as c:
        assert c.get("/a/link/secret.txt").status_code == 403
        assert c.get("/a/flink").status_code == 403
        listing = c.request("PROPFIND", "/a/", headers={"Depth": "1"})
        assert listing.status_code == 207, listing.text
        assert "link" not in listing.text  # neither a/link nor a/flink is listed
        assert c.put("/a/link/planted.txt", content=b"planted").status_code == 403
        assert c.delete("/a/link/secret.txt").status_code == 403
        assert c.request("MKCOL", "/a/link/newdir").status_code == 403
    assert snapshot(gw.data / "b") == before
