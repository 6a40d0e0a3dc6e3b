"""The local folder's upload (adapters/posix/write.py) when its commit cannot happen, on a
real folder: each refusal says what and where, the staged bytes go, the target is kept.
A full disk is /dev/full (the kernel's, not a stand-in) put under the writer."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.base import (
    AlreadyExists,
    InvalidPath,
    IsADirectory,
    NoSpace,
    ParentNotFound,
    StorageError,
)
from adapters.posix import STAGING, PosixStorage
from adapters.posix.write import PosixWriter


@pytest.fixture
def storage(tmp_path: Path) -> PosixStorage:
    (tmp_path / "root").mkdir()
    return PosixStorage(tmp_path / "root")


def _root(s: PosixStorage) -> Path:
    return Path(s.root)


def _staged(s: PosixStorage) -> list[str]:
    staging = _root(s) / STAGING
    return [p.name for p in staging.rglob("*") if p.is_file()] if staging.exists() else []


def _target_became_a_folder(s: PosixStorage) -> None:
    (_root(s) / "a" / "x").mkdir()


def _target_appeared(s: PosixStorage) -> None:
    (_root(s) / "a" / "x").write_bytes(b"theirs")


def _parent_removed(s: PosixStorage) -> None:
    shutil.rmtree(_root(s) / "a")


def _parent_became_a_file(s: PosixStorage) -> None:
    shutil.rmtree(_root(s) / "a")
    (_root(s) / "a").write_bytes(b"a file")


@pytest.mark.parametrize(
    ("meanwhile", "exclusive", "error", "message"),
    [
        (_target_became_a_folder, False, IsADirectory, "a/x: is a directory"),
        (_target_appeared, True, AlreadyExists, "a/x: already exists"),
        (_parent_removed, False, ParentNotFound, "a/x: parent directory does not exist"),
        (_parent_became_a_file, False, ParentNotFound, "a/x: parent directory does not exist"),
    ],
)
def test_a_commit_refused_by_what_changed_meanwhile_says_why_and_stages_nothing(
    storage: PosixStorage,
    meanwhile: Callable[[PosixStorage], None],
    exclusive: bool,
    error: type[StorageError],
    message: str,
) -> None:
    (_root(storage) / "a").mkdir()
    writer = storage.open_write("a/x", exclusive=exclusive)
    writer.write(b"mine")
    meanwhile(storage)
    with pytest.raises(error) as caught:
        writer.commit()
    assert type(caught.value) is error and str(caught.value) == message
    assert _staged(storage) == []
    if exclusive:
        assert (_root(storage) / "a" / "x").read_bytes() == b"theirs"


def test_a_rename_refused_for_another_reason_is_told_by_the_storage(
    storage: PosixStorage,
) -> None:
    """Not every failed rename is a missing parent: a name the file system refuses is
    the caller's invalid path, named."""
    name = "n" * 300
    writer = storage.open_write(name)
    writer.write(b"mine")
    with pytest.raises(InvalidPath) as caught:
        writer.commit()
    assert str(caught.value) == f"{name}: name too long"
    assert _staged(storage) == []


def test_a_commit_replaces_unless_create_only(storage: PosixStorage) -> None:
    (_root(storage) / "x").write_bytes(b"old")
    writer = storage.open_write("x")
    writer.write(b"new")
    assert writer.commit().size == 3
    assert (_root(storage) / "x").read_bytes() == b"new" and _staged(storage) == []


def _onto_a_full_disk(writer: PosixWriter, buffering: int) -> None:
    writer._file.close()
    writer._file = open("/dev/full", "wb", buffering=buffering)  # noqa: SIM115


def test_a_write_onto_a_full_disk_is_the_storages_no_space(storage: PosixStorage) -> None:
    writer = storage.open_write("x")
    _onto_a_full_disk(writer, 0)
    with pytest.raises(NoSpace) as caught:
        writer.write(b"bytes")
    assert str(caught.value) == "x: no space left on the storage"
    writer.abort()
    assert _staged(storage) == [] and not (_root(storage) / "x").exists()


def test_a_full_disk_found_at_commit_keeps_the_good_file(storage: PosixStorage) -> None:
    """Delayed allocation: the disk can be found full only when the bytes are flushed,
    at commit. The old file stays and nothing is staged."""
    (_root(storage) / "x").write_bytes(b"good")
    writer = storage.open_write("x")
    _onto_a_full_disk(writer, 1 << 16)
    writer.write(b"buffered, not yet on the disk")
    with pytest.raises(NoSpace) as caught:
        writer.commit()
    assert str(caught.value) == "x: no space left on the storage"
    assert (_root(storage) / "x").read_bytes() == b"good" and _staged(storage) == []


def test_an_upload_aborted_before_commit_gives_its_descriptor_back(
    storage: PosixStorage,
) -> None:
    before = set(os.listdir("/proc/self/fd"))
    writer = storage.open_write("x")
    writer.write(b"partial")
    writer.abort()
    assert writer._file.closed
    assert set(os.listdir("/proc/self/fd")) <= before
