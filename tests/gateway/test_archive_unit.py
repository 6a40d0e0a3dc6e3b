"""gateway/api/archive.py on its own: entry names, what an archive declares, and an
unpacking onto a real local folder that fails part-way (tests/gateway/test_hostile_bodies.py
and test_create_only.py send archives through HTTP)."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.base import AlreadyExists, Entry, PermissionDenied
from adapters.posix import STAGING, PosixStorage
from adapters.posix.write import PosixWriter
from gateway.api.archive import Archive, Member, _clean, unpack
from gateway.api.archive_limits import UnsafeArchive

LIMITS = {"max_bytes": 1 << 20, "max_entries": 100}


def unsafe(name: str) -> str:
    with pytest.raises(UnsafeArchive) as caught:
        _clean(name)
    return caught.value.message


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a\\b", "backslash or NUL in name"),
        ("a\x00b", "backslash or NUL in name"),
        ("/etc/passwd", "absolute path"),
        ("C:/Windows", "absolute path"),
        ("C:", "absolute path"),
        ("a/../../b", "'..' would escape the target"),
        ("..", "'..' would escape the target"),
        ("a ", "invalid path: a name may not end with a dot or a space"),
    ],
)
def test_unsafe_names_are_refused_with_the_reason(name: str, why: str) -> None:
    assert unsafe(name) == f"archive entry {name!r}: {why}"


@pytest.mark.parametrize(
    ("name", "clean"),
    [("a", "a"), ("dir/", "dir"), ("./a", "a"), ("././ab/c", "ab/c"), ("", ""), ("ab:c", "ab:c")],
)
def test_names_are_made_relative(name: str, clean: str) -> None:
    assert _clean(name) == clean


def _tar(*entries: tuple[str, bytes | None], kind: bytes = tarfile.REGTYPE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.type, info.size = kind, len(data)
            tf.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _zip(*entries: tuple[str, bytes | None], mode: int = 0o100644) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name + ("/" if data is None else ""))
            info.external_attr = ((0o040755 if data is None else mode) << 16) | (
                0x10 if data is None else 0
            )
            zf.writestr(info, data or b"")
    return buf.getvalue()


@pytest.mark.parametrize("pack", [_tar, _zip])
def test_members_and_what_they_declare(pack: object) -> None:
    data = pack(("d", None), ("d/f", b"12345"), ("./e/g", b"xy"))  # type: ignore[operator]
    archive = Archive(data, **LIMITS)
    assert archive.members == [
        Member("d", True, 0),
        Member("d/f", False, 5),
        Member("e/g", False, 2),
    ]
    assert (archive.tally.entries, archive.tally.bytes) == (3, 7)
    assert archive.directories() == ["d", "e"]
    assert list(archive.read_chunks(archive.members[1], chunk=2)) == [b"12", b"34", b"5"]


def test_directories_come_parents_first_with_the_implicit_ones() -> None:
    archive = Archive(_tar(("b/c/f", b"1"), ("a/", None), ("a/x/y/", None), ("z", b"")), **LIMITS)
    assert archive.directories() == ["a", "b", "a/x", "b/c", "a/x/y"]


def test_links_and_special_files_are_refused() -> None:
    with pytest.raises(UnsafeArchive, match=r"^archive entry 'l': symbolic links are refused$"):
        Archive(_zip(("l", b"/etc/passwd"), mode=0o120777), **LIMITS)
    with pytest.raises(UnsafeArchive, match=r"^archive entry 'f': only files and directories"):
        Archive(_tar(("f", b""), kind=tarfile.FIFOTYPE), **LIMITS)
    # An executable regular file is a regular file.
    assert Archive(_zip(("run.sh", b"#!"), mode=0o100755), **LIMITS).members[0].name == "run.sh"


def _tree(root: Path) -> list[str]:
    """Everything under the mount's root but its staging folder."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.relative_to(root).parts[0] != STAGING
    )


class _AppearsMidway(PosixStorage):
    """The local folder, where someone else creates ``appears`` just before fedgate
    opens it (the race an exclusive unpacking must lose without harm); it records the
    listings the roll-back closes, and ``undeletable`` refuses to go."""

    appears = "t/e/b"
    undeletable = ""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.closed: list[str] = []

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> PosixWriter:
        if path == self.appears:
            other = super().open_write(path)
            other.write(b"someone else's")
            other.commit()
        return super().open_write(path, size_hint, exclusive=exclusive)

    def list(self, path: str) -> Iterator[Entry]:
        listing = super().list(path)

        def closing() -> Iterator[Entry]:
            try:
                yield from listing
            finally:
                self.closed.append(path)

        return closing()

    def delete(self, path: str) -> None:
        if path == self.undeletable:
            raise PermissionDenied(f"{path}: not yours to delete")
        super().delete(path)


def test_a_failed_unpacking_removes_what_it_made_and_nothing_else(tmp_path: Path) -> None:
    storage = _AppearsMidway(tmp_path)
    archive = Archive(_tar(("e/a", b"mine"), ("e/b", b"mine too"), ("d/c", b"3")), **LIMITS)
    with pytest.raises(AlreadyExists):
        unpack(archive, storage, "t", target_exists=False, exclusive=True)
    # Made: t, t/d, t/e, t/e/a; then t/e/b appeared. Undone newest first: t/e/a; t/e
    # stays for the file someone else put there, and the undoing goes on: t/d (empty)
    # goes; t stays, it holds t/e.
    assert (tmp_path / "t/e/b").read_bytes() == b"someone else's"
    assert _tree(tmp_path) == ["t", "t/e", "t/e/b"]
    assert storage.closed == ["t/e", "t/d", "t"]  # every listing it opened, closed


def test_a_roll_back_goes_on_past_what_it_cannot_remove(tmp_path: Path) -> None:
    storage = _AppearsMidway(tmp_path)
    storage.undeletable = "t/e/a"
    archive = Archive(_tar(("e/a", b"mine"), ("e/b", b"mine too"), ("d/c", b"3")), **LIMITS)
    with pytest.raises(AlreadyExists):  # the unpacking's own error, not the roll-back's
        unpack(archive, storage, "t", target_exists=False, exclusive=True)
    assert _tree(tmp_path) == ["t", "t/e", "t/e/a", "t/e/b"]


def test_an_unpacking_returns_what_it_created_and_replaces_by_default(tmp_path: Path) -> None:
    storage = PosixStorage(tmp_path)
    (tmp_path / "t" / "d").mkdir(parents=True)
    (tmp_path / "t" / "d" / "a").write_bytes(b"old")
    archive = Archive(_tar(("d/", None), ("d/a", b"new"), ("e/", None), ("e/c", b"3")), **LIMITS)
    created = unpack(archive, storage, "t", target_exists=True)
    assert created == ["t/e", "t/d/a", "t/e/c"]
    assert (tmp_path / "t/d/a").read_bytes() == b"new"
    assert (tmp_path / "t/e/c").read_bytes() == b"3"


def test_a_damaged_member_is_named_and_nothing_stays(tmp_path: Path) -> None:
    data = bytearray(_zip(("a", b"A" * 100), ("b", b"B" * 100)))
    spot = bytes(data).index(b"B" * 100)
    data[spot] ^= 0xFF  # b's bytes no longer match its CRC-32
    with pytest.raises(UnsafeArchive) as caught:
        unpack(Archive(bytes(data), **LIMITS), PosixStorage(tmp_path), "t", target_exists=False)
    assert caught.value.message == "the archive is damaged (BadZipFile)"
    assert _tree(tmp_path) == []
