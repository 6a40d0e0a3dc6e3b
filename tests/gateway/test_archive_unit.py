"""gateway/api/archive.py on its own: entry names, what an archive declares, and an
unpacking onto a real local folder that fails part-way (tests/gateway/test_hostile_bodies.py
and test_create_only.py send archives through HTTP)."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.base import AlreadyExists, Entry, PermissionDenied
from adapters.posix import STAGING, PosixStorage
from adapters.posix.write import PosixWriter
from gateway.api.archive import Archive, Member, _clean, stream_tar_gz, unpack, walk
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
    [
        ("a", "a"),
        ("dir/", "dir"),
        ("dirX/", "dirX"),
        ("./a", "a"),
        ("././ab/c", "ab/c"),
        ("", ""),
        ("ab:c", "ab:c"),
    ],
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


class _Listing:
    """A listing that is closed only when told (a generator would be closed by the
    garbage collector as soon as the roll-back dropped it, told or not)."""

    def __init__(self, entries: list[Entry], on_close: Callable[[], None]) -> None:
        self._entries, self._on_close = entries, on_close

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __next__(self) -> Entry:
        raise TypeError("iterate with iter()")

    def close(self) -> None:
        self._on_close()


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
        return _Listing(list(super().list(path)), lambda: self.closed.append(path))

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


class _PlainListings(_AppearsMidway):
    """A storage whose listings are plain iterators, with nothing to close."""

    def list(self, path: str) -> Iterator[Entry]:
        return iter(list(PosixStorage.list(self, path)))


def test_a_roll_back_takes_listings_with_nothing_to_close(tmp_path: Path) -> None:
    storage = _PlainListings(tmp_path)
    archive = Archive(_tar(("e/a", b"mine"), ("e/b", b"mine too"), ("d/c", b"3")), **LIMITS)
    with pytest.raises(AlreadyExists):
        unpack(archive, storage, "t", target_exists=False, exclusive=True)
    assert _tree(tmp_path) == ["t", "t/e", "t/e/b"]


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


@pytest.fixture
def linked(tmp_path: Path) -> PosixStorage:
    """mount/tree with links to folders outside it: two to the same one (and a third from
    a subfolder), one from a subfolder to another, one a filter refuses, one into the
    tree itself."""
    root = tmp_path / "mount"
    for folder in ("tree/sub", "ext/one", "ext/two"):
        (root / folder).mkdir(parents=True)
    (root / "ext/one/f1").write_bytes(b"1")
    (root / "ext/two/f2").write_bytes(b"2")
    (root / "tree/a").symlink_to(root / "ext/one")
    (root / "tree/b").symlink_to(root / "ext/one")
    (root / "tree/sub/c").symlink_to(root / "ext/two")
    (root / "tree/sub/d").symlink_to(root / "ext/one")  # entered above already
    (root / "tree/sub/secret").symlink_to(root / "ext/two")
    (root / "tree/sub/loop").symlink_to(root / "tree")
    return PosixStorage(root)


def test_a_walk_enters_each_linked_folder_once_and_never_itself(linked: PosixStorage) -> None:
    refused = {"tree/sub/secret"}
    seen = [
        e.path
        for e in walk(linked, "tree", lambda e: e.path not in refused, linked.real_path("tree"))
    ]
    # a and b lead to the same folder: whichever the listing gives first is entered.
    first = "tree/a" if "tree/a" in seen else "tree/b"
    assert sorted(seen) == [first, f"{first}/f1", "tree/sub", "tree/sub/c", "tree/sub/c/f2"]


def test_what_an_archive_may_not_hold(tmp_path: Path) -> None:
    with pytest.raises(UnsafeArchive, match=r"^archive entry 'a/b': its parent is a file$"):
        Archive(_tar(("a", b"x"), ("a/b", b"y")), **LIMITS)
    with pytest.raises(UnsafeArchive, match=r"^archive entry 'a/b/c': its parent is a file$"):
        Archive(_zip(("a/b", b"x"), ("a/b/c", b"y")), **LIMITS)
    with pytest.raises(UnsafeArchive, match=r"^archive has duplicate entries$"):
        Archive(_tar(("a", b"x"), ("./a", b"y")), **LIMITS)
    with pytest.raises(UnsafeArchive, match=r"^not a readable zip or tar\(\.gz\) archive: "):
        Archive(b"this is neither zip nor tar" * 40, **LIMITS)


def test_a_folder_entry_declares_no_bytes_whatever_its_header_says() -> None:
    """A crafted tar or zip can give a folder entry a size (and a zip even content):
    it is counted, and unpacked, as an empty folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("d")
        info.type, info.size = tarfile.DIRTYPE, 0
        tf.addfile(info)
    raw = bytearray(buf.getvalue())
    raw[124:136] = b"%011o\0" % 5  # the header's size field, then its checksum again
    raw[148:156] = b" " * 8
    raw[148:155] = b"%06o\0" % sum(raw[:512])
    tar = Archive(bytes(raw), **LIMITS)
    assert tar.members == [Member("d", True, 0)] and tar.tally.bytes == 0
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("d/"), b"abc")
    zipped = Archive(zbuf.getvalue(), **LIMITS)
    assert zipped.members == [Member("d", True, 0)] and zipped.tally.bytes == 0


@pytest.mark.parametrize(("root", "names"), [("", ["m", "m/d", "m/d/f"]), ("d", ["m", "m/f"])])
def test_a_folder_streamed_as_tar_gz(tmp_path: Path, root: str, names: list[str]) -> None:
    """The whole mount (root "") or a folder: names below the archive's root folder,
    folders 0755 and files 0644, the bytes whole."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"12345")
    data = b"".join(stream_tar_gz(PosixStorage(tmp_path), root, "m"))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        members = [m for m in tf.getmembers() if not m.name.startswith(f"m/{STAGING}")]
        assert [m.name for m in members] == names
        assert [oct(m.mode) for m in members] == [
            oct(0o755 if m.isdir() else 0o644) for m in members
        ]
        (f,) = [m for m in members if m.isfile()]
        extracted = tf.extractfile(f)
        assert extracted is not None and extracted.read() == b"12345"


def test_a_streamed_tar_gz_holds_every_file_exactly(tmp_path: Path) -> None:
    """An empty file, one longer than a read, names that are not UTF-8 (a file's and a
    folder's: their bytes kept, PAX hdrcharset=BINARY), modification times kept; two
    zero blocks end the archive, no more and nothing else (what tar and libarchive
    expect)."""
    (tmp_path / "d").mkdir()
    big = os.urandom(3 * 1024 * 1024 + 5)
    files = {b"empty": b"", b"big": big, b"caf\xe9": b"latin-1 name"}
    for name, data in files.items():
        path = os.path.join(os.fsencode(tmp_path / "d"), name)
        Path(os.fsdecode(path)).write_bytes(data)
        os.utime(path, (1_000_000_000, 1_000_000_000 + len(data)))
    os.mkdir(os.path.join(os.fsencode(tmp_path / "d"), b"sub\xff"))
    raw = zlib.decompress(b"".join(stream_tar_gz(PosixStorage(tmp_path), "d", "m")), 31)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert sorted(members) == sorted(
            ["m", "m/sub\udcff", *(f"m/{os.fsdecode(n)}" for n in files)]
        )
        assert members["m/sub\udcff"].isdir()
        for name, data in files.items():
            member = members[f"m/{os.fsdecode(name)}"]
            extracted = tf.extractfile(member)
            assert extracted is not None and extracted.read() == data
            assert (member.size, member.mtime) == (len(data), 1_000_000_000 + len(data))
        last = max(members.values(), key=lambda m: m.offset_data)
    end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    assert raw[end:] == b"\0" * tarfile.BLOCKSIZE * 2


@pytest.mark.parametrize(("change", "word"), [(b"0123456789", "grew"), (b"01", "shrank")])
def test_a_file_changed_while_streamed_breaks_the_archive(
    tmp_path: Path, change: bytes, word: str
) -> None:
    """Its header already promised a size: a client must never get an archive that looks
    whole and is not."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"01234")
    stream = stream_tar_gz(PosixStorage(tmp_path), "d", "m")
    next(stream)  # the archive's own folder
    next(stream)  # f's header, its size read: 5
    (tmp_path / "d" / "f").write_bytes(change)
    with pytest.raises(OSError, match=rf"^d/f {word} while being archived$"):
        list(stream)
