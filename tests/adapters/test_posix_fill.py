"""A copy between two local mounts inside the kernel (PosixWriter.fill_from): on a real
folder, with the kernel's answers played where this machine cannot give them (a copy
across filesystems, a short copy, a source that shrinks meanwhile)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from adapters.base import StorageError
from adapters.posix import PosixStorage

DATA = os.urandom(300_000)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(DATA)
    return path


@pytest.fixture
def target(tmp_path: Path) -> PosixStorage:
    (tmp_path / "mount").mkdir()
    return PosixStorage(tmp_path / "mount")


def fill(target: PosixStorage, source: Path) -> int:
    writer = target.open_write("copy.bin")
    n = writer.fill_from(str(source))
    writer.commit()
    return n


def test_a_copy_in_many_short_pieces_is_whole(
    target: PosixStorage, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = os.copy_file_range

    def short(src: int, dst: int, count: int, *args: object) -> int:
        return real(src, dst, min(count, 65_536))

    monkeypatch.setattr(os, "copy_file_range", short)
    assert fill(target, source) == len(DATA)
    assert (Path(target.root) / "copy.bin").read_bytes() == DATA


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP])
def test_where_the_kernel_cannot_copy_between_them_sendfile_does(
    target: PosixStorage, source: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "copy_file_range", refuse)
    assert fill(target, source) == len(DATA)
    assert (Path(target.root) / "copy.bin").read_bytes() == DATA


def test_another_kernel_error_is_the_storages(
    target: PosixStorage, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "copy_file_range", fail)
    writer = target.open_write("copy.bin")
    with pytest.raises(StorageError, match=r"^copy.bin: "):
        writer.fill_from(str(source))
    writer.abort()
    assert not (Path(target.root) / "copy.bin").exists()


def test_a_source_that_shrinks_meanwhile_gives_the_count_copied(
    target: PosixStorage, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller compares the count with the size it announced: fill_from must say
    how much it copied, not fail or claim the whole."""
    real = os.copy_file_range

    def shrinking(src: int, dst: int, count: int, *args: object) -> int:
        n = real(src, dst, min(count, 1000))
        os.truncate(source, 1000)  # the rest is gone
        return n

    monkeypatch.setattr(os, "copy_file_range", shrinking)
    writer = target.open_write("copy.bin")
    assert writer.fill_from(str(source)) == 1000
    writer.abort()


def test_across_real_filesystems(target: PosixStorage) -> None:
    """From tmpfs to the disk: whichever call the kernel takes, the copy is whole."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(target.root).st_dev:
        pytest.skip("needs /dev/shm on another filesystem than the test folder")
    source = shm / f"fedgate-fill-{os.getpid()}.bin"
    source.write_bytes(DATA)
    try:
        assert fill(target, source) == len(DATA)
    finally:
        source.unlink()
    assert (Path(target.root) / "copy.bin").read_bytes() == DATA
