"""POSIX adapter: the conformance suite on a temp folder, plus confinement checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.base import InvalidPath, NotFound, PermissionDenied
from adapters.posix import STAGING, PosixAdapter, PosixStorage
from adapters.posix.noreplace import rename_noreplace
from tests.adapters.conformance import AdapterConformance, write
from tests.backends import PosixFixtures


class TestPosixConformance(PosixFixtures, AdapterConformance):
    pass


@pytest.fixture
def posix(tmp_path: Path) -> PosixStorage:
    root = tmp_path / "mount"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("outside")
    return PosixStorage(root)


def test_symlink_pointing_outside_is_refused(posix: PosixStorage, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", os.path.join(posix.root, "link"))
    os.symlink(tmp_path, os.path.join(posix.root, "dirlink"))
    with pytest.raises(PermissionDenied):
        posix.stat("link")
    with pytest.raises(PermissionDenied):
        b"".join(posix.open_read("dirlink/secret.txt"))
    with pytest.raises(PermissionDenied):
        posix.open_write("dirlink/new.txt")
    assert {e.name for e in posix.list("")} == set()  # escaping links are hidden
    assert not (tmp_path / "new.txt").exists()


def test_symlink_inside_is_followed(posix: PosixStorage) -> None:
    write(posix, "real", b"data")
    os.symlink(os.path.join(posix.root, "real"), os.path.join(posix.root, "alias"))
    assert b"".join(posix.open_read("alias")) == b"data"


@pytest.mark.parametrize(
    "bad", ["..", "../x", "a/../../x", "/etc/passwd", "a\\..\\b", "a\x00b", "a//b", "./a"]
)
def test_escaping_paths_are_invalid(posix: PosixStorage, bad: str) -> None:
    with pytest.raises(InvalidPath):
        posix.stat(bad)


def test_staging_area_is_invisible(posix: PosixStorage) -> None:
    w = posix.open_write("f")
    w.write(b"x")
    assert STAGING not in {e.name for e in posix.list("")}
    with pytest.raises(NotFound):
        posix.stat(STAGING)
    w.abort()


def test_stale_staging_of_dead_process_is_cleaned(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    import socket

    stale = root / STAGING / f"{socket.gethostname()}-999999"
    stale.mkdir(parents=True)
    (stale / "half-upload").write_bytes(b"x" * 10)
    PosixAdapter(root)
    assert not stale.exists()


def _xattrs_work(folder: Path) -> bool:
    probe = folder / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
        return True
    except OSError:
        return False
    finally:
        probe.unlink()


def test_md5_is_remembered_and_forgotten_when_the_file_changes(posix: PosixStorage) -> None:
    import hashlib

    from adapters.posix import MD5_XATTR

    if not _xattrs_work(Path(posix.root)):
        pytest.fail("the test folder's filesystem has no user xattrs; run on ext4/xfs/btrfs")
    write(posix, "f", b"first version")
    full = os.path.join(posix.root, "f")
    stored = os.getxattr(full, MD5_XATTR).decode()
    assert stored.endswith(hashlib.md5(b"first version").hexdigest())  # computed while uploading
    assert posix.checksum("f") == hashlib.md5(b"first version").hexdigest()
    with open(full, "r+b") as f:  # changed behind fedgate's back: same size, new bytes
        f.write(b"FIRST")
    os.utime(full, ns=(time_ns(), time_ns() + 5_000_000))
    assert posix.checksum("f") == hashlib.md5(b"FIRST version").hexdigest()
    os.setxattr(full, MD5_XATTR, b"garbage")
    assert posix.checksum("f") == hashlib.md5(b"FIRST version").hexdigest()


def time_ns() -> int:
    import time

    return time.time_ns()


# --- exclusive commits and links --------------------------------------------------------


@pytest.mark.parametrize("use_renameat2", [True, False])
def test_rename_noreplace_keeps_what_is_there(tmp_path: Path, use_renameat2: bool) -> None:
    """Both ways of committing without replacing: renameat2 and link/unlink (the
    fallback on filesystems that refuse RENAME_NOREPLACE)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_bytes(b"new")
    dst.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        rename_noreplace(str(src), str(dst), use_renameat2)
    assert dst.read_bytes() == b"old" and src.read_bytes() == b"new"
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")  # a dangling link is a name too
    with pytest.raises(FileExistsError):
        rename_noreplace(str(src), str(tmp_path / "dangling"), use_renameat2)
    rename_noreplace(str(src), str(tmp_path / "fresh"), use_renameat2)
    assert (tmp_path / "fresh").read_bytes() == b"new" and not src.exists()


def test_real_path_follows_links_inside_the_root(posix: PosixStorage, tmp_path: Path) -> None:
    root = Path(posix.root)
    (root / "a").mkdir()
    (root / "b").mkdir()
    (root / "b" / "f").write_text("b's file")
    os.symlink("../b", root / "a" / "link")
    os.symlink(tmp_path, root / "a" / "out")
    assert posix.real_path("a/link") == "b"
    assert posix.real_path("a/link/f") == "b/f"
    assert posix.real_path("a/link/new") == "b/new"  # a path that does not exist yet
    assert posix.real_path("a/link", follow_last=False) == "a/link"
    assert posix.real_path("a/link/new", follow_last=False) == "b/new"
    with pytest.raises(PermissionDenied):
        posix.real_path("a/out")
    listed = {e.name: e.link_target for e in posix.list("a")}
    assert listed == {"link": "b"}  # the escaping link is not listed at all


def test_links_into_staging_are_unreachable(posix: PosixStorage) -> None:
    staging = Path(posix.staging_dir())
    (staging / "inflight").write_bytes(b"partial upload")
    os.symlink(staging, Path(posix.root) / "peek")
    with pytest.raises(NotFound):
        b"".join(posix.open_read("peek/inflight"))
    assert [e.name for e in posix.list("")] == []
