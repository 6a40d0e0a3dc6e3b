"""The delegation's guarantees on the door's own routes: links on a POSIX mount never lead
a token out of its scope (GET, HEAD, PROPFIND, the folder index, PUT, MOVE), and a
create-only token never replaces a file, even one that appears while it writes — checked
on the file system, not by the status alone."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from adapters.base import AlreadyExists, Entry
from adapters.posix import STAGING, PosixStorage
from gateway.webdav.door import _move
from tests.server import Running
from tests.webdav.helpers import bearer, door, token


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.0005)


def staging_files(data: Path) -> list[Path]:
    return [p for p in (data / STAGING).rglob("*") if p.is_file()]


@pytest.fixture
def linked(gw: Running) -> Path:
    """/a (the token's scope) holds a link to the sibling /b and a link loop."""
    (gw.data / "a").mkdir()
    (gw.data / "a" / "mine.txt").write_bytes(b"mine")
    (gw.data / "b").mkdir()
    (gw.data / "b" / "secret.txt").write_bytes(b"secret")
    os.symlink("../b", gw.data / "a" / "link")
    os.symlink("../b/secret.txt", gw.data / "a" / "file-link")
    os.symlink("loop", gw.data / "a" / "loop")
    return gw.data


def test_links_out_of_scope_are_not_followed(gw: Running, linked: Path) -> None:
    h = bearer(token(gw, "storage.read:/local/a storage.create:/local/a"))
    for path in ("a/link/secret.txt", "a/file-link"):
        assert httpx.get(door(gw) + "/" + path, headers=h).status_code == 403, path
        assert httpx.head(door(gw) + "/" + path, headers=h).status_code == 403, path
        pf = httpx.request("PROPFIND", door(gw) + "/" + path, headers={**h, "Depth": "0"})
        assert pf.status_code == 403, path
    listing = httpx.request("PROPFIND", door(gw) + "/a/", headers={**h, "Depth": "1"})
    assert listing.status_code == 207
    assert b"mine.txt" in listing.content
    assert b"link" not in listing.content
    assert b"secret" not in listing.content
    index = httpx.get(door(gw) + "/a/", headers=h)
    assert index.status_code == 200
    assert "mine.txt" in index.text
    assert "link" not in index.text
    put = httpx.put(door(gw) + "/a/link/planted.txt", content=b"x", headers=h)
    assert put.status_code == 403
    assert not (linked / "b" / "planted.txt").exists()
    assert httpx.request("MKCOL", door(gw) + "/a/link/d", headers=h).status_code == 403
    assert not (linked / "b" / "d").exists()


def test_move_does_not_follow_links_out_of_scope(gw: Running, linked: Path) -> None:
    h = bearer(token(gw, "storage.read:/local/a storage.modify:/local/a"))
    # Into the sibling through the link: refused, nothing moved.
    mv = {**h, "Destination": "/webdav/local/a/link/mine.txt"}
    assert httpx.request("MOVE", door(gw) + "/a/mine.txt", headers=mv).status_code == 403
    assert (linked / "a" / "mine.txt").read_bytes() == b"mine"
    assert not (linked / "b" / "mine.txt").exists()
    # A link moved within the scope stays a link: its target's bytes are not copied.
    mv = {**h, "Destination": "/webdav/local/a/renamed"}
    assert httpx.request("MOVE", door(gw) + "/a/link", headers=mv).status_code == 201
    assert (linked / "a" / "renamed").is_symlink()
    assert (linked / "b" / "secret.txt").read_bytes() == b"secret"


def test_a_link_loop_ends_the_listing_and_is_not_followed(gw: Running, linked: Path) -> None:
    r = httpx.request("PROPFIND", door(gw) + "/a/", headers={"apikey": gw.key, "Depth": "1"})
    assert r.status_code == 207
    assert r.content.count(b"<D:response>") <= 5  # /a/ and at most its four names
    # Through the loop there is nothing: 404 on both faces, not a gateway error.
    assert httpx.get(door(gw) + "/a/loop/x", headers={"apikey": gw.key}).status_code == 404
    carmin = httpx.get(gw.api + "/path/local/a/loop/x?action=content", headers={"apikey": gw.key})
    assert carmin.status_code == 404


def test_create_only_put_keeps_a_file_that_appeared_midway(gw: Running) -> None:
    (gw.data / "up").mkdir()
    target = gw.data / "up" / "f.bin"
    h = bearer(token(gw, "storage.create:/local/up"))

    def body() -> Iterator[bytes]:
        yield b"x" * 65536
        # The gateway's writer exists: it has looked for the target (none) already.
        wait_for(lambda: bool(staging_files(gw.data)), "the gateway's staging file")
        target.write_bytes(b"first come")
        yield b"y" * 65536

    r = httpx.put(door(gw) + "/up/f.bin", content=body(), headers=h)
    assert r.status_code == 409, r.text
    assert target.read_bytes() == b"first come"
    wait_for(lambda: not staging_files(gw.data), "the aborted upload's cleanup")


def test_create_only_move_commits_without_replacing(tmp_path: Path) -> None:
    """MOVE's last step for a destination the caller may only create: whatever appeared
    there since the check stays (the race made deterministic at the storage)."""
    (tmp_path / "src.txt").write_bytes(b"moving")
    (tmp_path / "dst.txt").write_bytes(b"first come")
    storage = PosixStorage(tmp_path)
    entry = Entry("src.txt", is_dir=False, size=6)
    with pytest.raises(AlreadyExists):
        _move(storage, "src.txt", "dst.txt", entry, None, exclusive=True)
    assert (tmp_path / "dst.txt").read_bytes() == b"first come"
    assert (tmp_path / "src.txt").read_bytes() == b"moving"


def test_create_only_move_by_copy_commits_without_replacing(tmp_path: Path) -> None:
    """The same on the copy path that storages without a rename take."""

    class NoRename:
        def __init__(self, inner: PosixStorage) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> object:
            if name == "rename":
                raise AttributeError(name)
            return getattr(self._inner, name)

    (tmp_path / "src.txt").write_bytes(b"moving")
    (tmp_path / "dst.txt").write_bytes(b"first come")
    storage = NoRename(PosixStorage(tmp_path))
    entry = Entry("src.txt", is_dir=False, size=6)
    with pytest.raises(AlreadyExists):
        _move(storage, "src.txt", "dst.txt", entry, None, exclusive=True)  # type: ignore[arg-type]
    assert (tmp_path / "dst.txt").read_bytes() == b"first come"
    assert (tmp_path / "src.txt").read_bytes() == b"moving"


def test_a_create_token_move_answers_409_when_the_target_appears(gw: Running) -> None:
    """Over HTTP: the destination appears between the check and the commit."""
    (gw.data / "src").mkdir()
    (gw.data / "dst").mkdir()
    (gw.data / "src" / "f").write_bytes(os.urandom(1024))
    h = bearer(
        token(gw, "storage.read:/local/src storage.modify:/local/src storage.create:/local/dst")
    )
    target = gw.data / "dst" / "f"
    real_rename = PosixStorage.rename

    def racing(self: PosixStorage, src: str, dst: str, replace: bool = True) -> None:
        target.write_bytes(b"first come")  # someone else, just before the commit
        real_rename(self, src, dst, replace)

    PosixStorage.rename = racing  # type: ignore[method-assign]
    try:
        mv = {**h, "Destination": "/webdav/local/dst/f"}
        r = httpx.request("MOVE", door(gw) + "/src/f", headers=mv)
    finally:
        PosixStorage.rename = real_rename  # type: ignore[method-assign]
    assert r.status_code == 409, r.text
    assert target.read_bytes() == b"first come"
    assert (gw.data / "src" / "f").exists()
