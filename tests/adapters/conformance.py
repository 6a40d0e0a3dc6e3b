"""The adapter conformance suite: every backend runs it against its real server.

A backend's test module inherits it with one line, taking the backend's fixtures class
from tests/backends.py (the same the gateway's CARMIN flow takes)::

    class TestS3Conformance(S3Fixtures, AdapterConformance): ...

The fixtures class gives ``space``, a fresh, empty folder on the real server; ``storage``
is the adapter bound to it with the user's credential. Every test starts from that empty
root, so tests never see each other's files.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from adapters.base import (
    AlreadyExists,
    Entry,
    IsADirectory,
    NotADirectory,
    NotFound,
    ParentNotFound,
    Storage,
    StorageError,
)
from tests.backends import Space

BINARY = bytes(range(256)) * 64 + b"\r\n\x00\xff" * 100  # every byte value, CR/LF, NUL


def write(storage: Storage, path: str, data: bytes, chunk: int = 65536) -> Entry:
    writer = storage.open_write(path, size_hint=len(data))
    try:
        for i in range(0, len(data), chunk):
            writer.write(data[i : i + chunk])
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def read(storage: Storage, path: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(storage.open_read(path, start, end))


def names(entries: Iterator[Entry]) -> set[str]:
    return {e.name for e in entries}


class AdapterConformance:
    """Behaviour every Storage must have. Override ``many_entries`` for slow backends."""

    many_entries = 1100  # more than one page of S3 (1000), Girder (default 50), iRODS (500)

    @pytest.fixture
    def storage(self, space: Space) -> Iterator[Storage]:
        adapter = space.adapter()
        yield adapter.bind(space.credential)
        adapter.close()  # and the views it pooled

    # --- stat / mkdir ---------------------------------------------------------------

    def test_root_is_a_directory(self, storage: Storage) -> None:
        entry = storage.stat("")
        assert entry.is_dir

    def test_stat_missing_raises_not_found(self, storage: Storage) -> None:
        with pytest.raises(NotFound):
            storage.stat("no-such-file")
        with pytest.raises(NotFound):
            storage.stat("no-such-dir/below")

    def test_mkdir_then_stat(self, storage: Storage) -> None:
        made = storage.mkdir("d")
        assert made.is_dir and made.path == "d"
        entry = storage.stat("d")
        assert entry.is_dir and entry.path == "d" and entry.name == "d"

    def test_mkdir_existing_raises_already_exists(self, storage: Storage) -> None:
        storage.mkdir("d")
        with pytest.raises(AlreadyExists):
            storage.mkdir("d")
        write(storage, "f", b"x")
        with pytest.raises(AlreadyExists):
            storage.mkdir("f")

    def test_mkdir_without_parent_raises(self, storage: Storage) -> None:
        with pytest.raises(ParentNotFound):
            storage.mkdir("missing/child")
        with pytest.raises(NotFound):
            storage.stat("missing")

    def test_mkdir_below_file_raises(self, storage: Storage) -> None:
        write(storage, "f", b"x")
        with pytest.raises((NotADirectory, ParentNotFound)):
            storage.mkdir("f/child")

    # --- write / read ---------------------------------------------------------------

    def test_write_and_read_binary_exactly(self, storage: Storage) -> None:
        entry = write(storage, "bin.dat", BINARY, chunk=1000)
        assert not entry.is_dir and entry.size == len(BINARY)
        assert read(storage, "bin.dat") == BINARY
        stat = storage.stat("bin.dat")
        assert stat.size == len(BINARY) and not stat.is_dir
        assert stat.mtime is not None and stat.mtime > 1_000_000_000

    def test_empty_file(self, storage: Storage) -> None:
        write(storage, "empty", b"")
        assert storage.stat("empty").size == 0
        assert read(storage, "empty") == b""

    def test_ranged_read(self, storage: Storage) -> None:
        write(storage, "r", BINARY)
        assert read(storage, "r", 10, 20) == BINARY[10:20]
        assert read(storage, "r", 100) == BINARY[100:]
        assert read(storage, "r", len(BINARY) - 1) == BINARY[-1:]
        assert read(storage, "r", 0, 1) == BINARY[:1]

    def test_large_write_in_many_chunks(self, storage: Storage) -> None:
        data = os.urandom(12 * 1024 * 1024 + 123)  # past multipart / chunk thresholds
        write(storage, "big", data, chunk=1024 * 1024)
        assert storage.stat("big").size == len(data)
        got = hashlib.md5(b"".join(storage.open_read("big"))).hexdigest()
        assert got == hashlib.md5(data).hexdigest()
        assert (
            read(storage, "big", 6 * 1024 * 1024, 6 * 1024 * 1024 + 5000)
            == data[6 * 1024 * 1024 : 6 * 1024 * 1024 + 5000]
        )

    def test_overwrite_replaces_content(self, storage: Storage) -> None:
        write(storage, "f", b"old content")
        write(storage, "f", b"new")
        assert read(storage, "f") == b"new"
        assert storage.stat("f").size == 3

    def test_aborted_write_leaves_nothing(self, storage: Storage) -> None:
        writer = storage.open_write("partial")
        writer.write(b"a" * 100_000)
        writer.abort()
        writer.abort()  # idempotent
        with pytest.raises(NotFound):
            storage.stat("partial")
        assert "partial" not in names(storage.list(""))

    def test_nothing_visible_before_commit(self, storage: Storage) -> None:
        writer = storage.open_write("pending")
        try:
            writer.write(b"b" * 1000)
            with pytest.raises(NotFound):
                storage.stat("pending")
            assert names(storage.list("")) == set()
        finally:
            writer.abort()

    def test_aborted_overwrite_keeps_old_file(self, storage: Storage) -> None:
        write(storage, "keep", b"good data")
        writer = storage.open_write("keep")
        writer.write(b"bad" * 10_000)
        writer.abort()
        assert read(storage, "keep") == b"good data"
        assert names(storage.list("")) == {"keep"}

    # --- exclusive (create-only) writes ------------------------------------------------

    def test_exclusive_write_creates(self, storage: Storage) -> None:
        writer = storage.open_write("new", size_hint=3, exclusive=True)
        try:
            writer.write(b"abc")
            writer.commit()
        finally:
            writer.abort()
        assert read(storage, "new") == b"abc"

    def test_exclusive_write_refuses_an_existing_file(self, storage: Storage) -> None:
        write(storage, "there", b"keep me")
        with pytest.raises(AlreadyExists):
            writer = storage.open_write("there", size_hint=5, exclusive=True)
            try:
                writer.write(b"other")
                writer.commit()
            finally:
                writer.abort()
        assert read(storage, "there") == b"keep me"

    def test_exclusive_commit_keeps_a_file_that_appeared_meanwhile(self, storage: Storage) -> None:
        """The race a create-only token must lose: the target is created by someone else
        while the upload streams; the commit refuses and the other file stays as it is."""
        data = os.urandom(64 * 1024)
        writer = storage.open_write("race", size_hint=len(data), exclusive=True)
        try:
            writer.write(data[:32768])
            write(storage, "race", b"first come")
            writer.write(data[32768:])
            with pytest.raises(AlreadyExists):
                writer.commit()
        finally:
            writer.abort()
        assert read(storage, "race") == b"first come"
        assert names(storage.list("")) == {"race"}  # and no temporary left behind

    def test_write_without_parent_raises(self, storage: Storage) -> None:
        with pytest.raises(ParentNotFound):
            w = storage.open_write("missing/f")
            try:
                w.write(b"x")
                w.commit()
            finally:
                w.abort()

    def test_write_onto_directory_raises(self, storage: Storage) -> None:
        storage.mkdir("d")
        with pytest.raises(IsADirectory):
            w = storage.open_write("d")
            try:
                w.write(b"x")
                w.commit()
            finally:
                w.abort()
        assert storage.stat("d").is_dir

    def test_read_directory_raises(self, storage: Storage) -> None:
        storage.mkdir("d")
        with pytest.raises(IsADirectory):
            read(storage, "d")

    def test_read_missing_raises(self, storage: Storage) -> None:
        with pytest.raises(NotFound):
            read(storage, "nope")

    def test_awkward_names(self, storage: Storage) -> None:
        for name in ["with space", "quote'and\"double", "ünïcødé-日本", "semi;colon&amp", "100%"]:
            write(storage, name, name.encode())
            assert read(storage, name) == name.encode()
            assert storage.stat(name).name == name
        storage.mkdir("dir with space")
        write(storage, "dir with space/inner file", b"in")
        assert names(storage.list("dir with space")) == {"inner file"}

    # --- list -----------------------------------------------------------------------

    def test_list_directory(self, storage: Storage) -> None:
        storage.mkdir("d")
        storage.mkdir("d/sub")
        write(storage, "d/a.txt", b"aaa")
        write(storage, "d/sub/deep", b"deep")
        entries = {e.name: e for e in storage.list("d")}
        assert set(entries) == {"a.txt", "sub"}
        assert entries["sub"].is_dir and entries["sub"].path == "d/sub"
        assert not entries["a.txt"].is_dir and entries["a.txt"].size == 3
        assert entries["a.txt"].path == "d/a.txt"

    def test_list_empty_directory(self, storage: Storage) -> None:
        storage.mkdir("empty")
        assert list(storage.list("empty")) == []

    def test_list_missing_raises_not_found(self, storage: Storage) -> None:
        with pytest.raises(NotFound):
            list(storage.list("nope"))

    def test_list_file_raises_not_a_directory(self, storage: Storage) -> None:
        write(storage, "f", b"x")
        with pytest.raises(NotADirectory):
            list(storage.list("f"))

    def test_list_many_entries_in_pages(self, storage: Storage) -> None:
        storage.mkdir("many")
        self.populate_many(storage, "many", self.many_entries)
        seen = names(storage.list("many"))
        assert seen == {f"f{i:05d}" for i in range(self.many_entries)}

    def populate_many(self, storage: Storage, folder: str, count: int) -> None:
        """Backends may override with a faster native bulk upload."""
        for i in range(count):
            write(storage, f"{folder}/f{i:05d}", b"")

    # --- delete ---------------------------------------------------------------------

    def test_delete_file(self, storage: Storage) -> None:
        write(storage, "f", b"x")
        storage.delete("f")
        with pytest.raises(NotFound):
            storage.stat("f")

    def test_delete_directory_recursively(self, storage: Storage) -> None:
        storage.mkdir("t")
        storage.mkdir("t/u")
        write(storage, "t/u/v", b"v")
        write(storage, "t/w", b"w")
        storage.delete("t")
        with pytest.raises(NotFound):
            storage.stat("t")
        with pytest.raises(NotFound):
            storage.stat("t/u/v")
        assert names(storage.list("")) == set()

    def test_delete_missing_raises_not_found(self, storage: Storage) -> None:
        with pytest.raises(NotFound):
            storage.delete("nope")

    # --- checksums ------------------------------------------------------------------

    def test_md5(self, storage: Storage) -> None:
        write(storage, "c", BINARY)
        assert storage.checksum("c", "md5") == hashlib.md5(BINARY).hexdigest()

    def test_md5_of_missing_raises(self, storage: Storage) -> None:
        with pytest.raises(NotFound):
            storage.checksum("nope", "md5")

    def test_errors_are_storage_errors(self, storage: Storage) -> None:
        with pytest.raises(StorageError):
            storage.stat("nope")

    def test_native_checksums_match_local_computation(self, storage: Storage) -> None:
        write(storage, "n", BINARY)
        for algorithm in sorted(storage.capabilities.native_checksums):
            assert storage.checksum("n", algorithm) == local_checksum(algorithm, BINARY)


def local_checksum(algorithm: str, data: bytes) -> str:
    if algorithm == "adler32":
        import zlib

        return f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    return hashlib.new(algorithm, data).hexdigest()
