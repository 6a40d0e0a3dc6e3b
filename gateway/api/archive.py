"""Archives: safe unpacking of uploaded zip / tar.gz, and directories streamed as tar.gz.

Unpacking checks the whole archive before writing anything: every entry name must be a
plain relative path (no absolute path, ``..``, backslash, drive letter, NUL), only regular
files and directories are accepted (no links, devices or FIFOs), and the declared total
size and entry count must stay under the configured limits. zipfile never yields more
bytes than an entry declares and tar sizes are exact, so the declared total bounds what
is written: a zip bomb is refused before a byte lands on the storage.

Entries are counted and their sizes added up as they are read, and reading stops at the
first limit passed: first by a quick scan of the zip directory or tar headers
(gateway/api/archive_limits.py), then by zipfile and tarfile themselves (a tar read header by
header with ``TarFile.next``). 300,000 empty tar entries fit in 2 MB of gzip; they cost
the gateway what ``max_archive_entries`` of them cost, not what 300,000 would.
"""

from __future__ import annotations

import contextlib
import io
import lzma
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from adapters.base import Entry, Storage, join
from gateway.api import paths
from gateway.api.archive_limits import Tally, UnsafeArchive, count_zip_directory, scan_tar
from gateway.errors import CarminError

# What a damaged archive raises while its entries are read (xz's LZMAError is none of the
# others: uncaught, it was a 500).
_DAMAGED = (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True, slots=True)
class Member:
    name: str  # normalised relative path, "a/b"
    is_dir: bool
    size: int


def _clean(name: str) -> str:
    raw = name
    if "\\" in raw or "\x00" in raw:
        raise UnsafeArchive(f"archive entry {name!r}: backslash or NUL in name")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise UnsafeArchive(f"archive entry {name!r}: absolute path")
    stripped = raw.rstrip("/")
    while stripped.startswith("./"):
        stripped = stripped[2:]
    if not stripped:
        return ""
    if any(seg == ".." for seg in stripped.split("/")):
        raise UnsafeArchive(f"archive entry {name!r}: '..' would escape the target")
    try:
        parsed = paths.parse("x/" + stripped)
    except CarminError as exc:
        raise UnsafeArchive(f"archive entry {name!r}: {exc.message}") from None
    return parsed.inner


def _members_zip(
    zf: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], tally: Tally
) -> list[Member]:
    out = []
    tally.entries = tally.bytes = 0  # counted again, now with zip64 sizes
    for info in zf.infolist():
        mode = (info.external_attr >> 16) & 0o170000
        if mode == 0o120000:
            raise UnsafeArchive(f"archive entry {info.filename!r}: symbolic links are refused")
        tally.add(0 if info.is_dir() else info.file_size)
        name = _clean(info.filename)
        if name:
            infos[name] = info
            out.append(Member(name, info.is_dir(), 0 if info.is_dir() else info.file_size))
    return out


def _members_tar(
    tf: tarfile.TarFile, infos: dict[str, tarfile.TarInfo], tally: Tally
) -> list[Member]:
    out = []
    # ``next`` reads one header at a time (``getmembers`` would read them all first).
    while (info := tf.next()) is not None:
        if not (info.isfile() or info.isdir()):
            raise UnsafeArchive(f"archive entry {info.name!r}: only files and directories allowed")
        tally.add(info.size if info.isfile() else 0)
        name = _clean(info.name)
        if name:
            infos[name] = info
            out.append(Member(name, info.isdir(), info.size if info.isfile() else 0))
    return out


class Archive:
    """An uploaded archive held in memory (it arrived base64 in a JSON body)."""

    def __init__(self, data: bytes, max_bytes: int, max_entries: int) -> None:
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._zip_infos: dict[str, zipfile.ZipInfo] = {}
        self._tar_infos: dict[str, tarfile.TarInfo] = {}
        self.tally = Tally(max_bytes, max_entries)
        try:
            if zipfile.is_zipfile(io.BytesIO(data)):
                count_zip_directory(data, self.tally)
                self._zip = zipfile.ZipFile(io.BytesIO(data))
                members = _members_zip(self._zip, self._zip_infos, self.tally)
            else:
                scan_tar(data, Tally(max_bytes, max_entries))  # refuses early, and cheaply
                self._tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
                members = _members_tar(self._tar, self._tar_infos, self.tally)
        except (
            zipfile.BadZipFile,
            tarfile.TarError,
            EOFError,
            zlib.error,
            lzma.LZMAError,
            OSError,
            struct.error,
        ) as exc:
            raise UnsafeArchive(f"not a readable zip or tar(.gz) archive: {exc}") from None
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise UnsafeArchive("archive has duplicate entries")
        files = {m.name for m in members if not m.is_dir}
        for m in members:  # a file may not also be the parent of another entry
            parts = m.name.split("/")
            for i in range(1, len(parts)):
                if "/".join(parts[:i]) in files:
                    raise UnsafeArchive(f"archive entry {m.name!r}: its parent is a file")
        self.members = members

    def directories(self) -> list[str]:
        """Every directory to create, parents first (implicit ones included)."""
        dirs: set[str] = set()
        for m in self.members:
            parts = m.name.split("/")
            upto = len(parts) if m.is_dir else len(parts) - 1
            for i in range(1, upto + 1):
                dirs.add("/".join(parts[:i]))
        return sorted(dirs, key=lambda d: (d.count("/"), d))

    def read_chunks(self, member: Member, chunk: int = 1024 * 1024) -> Iterator[bytes]:
        if self._zip is not None:
            with self._zip.open(self._zip_infos[member.name]) as f:
                while data := f.read(chunk):
                    yield data
            return
        assert self._tar is not None
        extracted = self._tar.extractfile(self._tar_infos[member.name])
        if extracted is None:
            return
        with extracted:
            while data := extracted.read(chunk):
                yield data


def unpack(
    archive: Archive,
    storage: Storage,
    target: str,
    target_exists: bool,
    exclusive: bool = False,
) -> list[str]:
    """Write the archive below ``target``; on failure remove what this call created.

    ``exclusive`` (a caller who may create but not replace): every file is written
    without replacing (adapters.base.Storage.open_write), so a file that exists, or
    appears while the archive is unpacked, is kept and the unpacking fails with
    AlreadyExists, removing what it had created."""
    from adapters.base import AlreadyExists, StorageError

    created: list[str] = []
    try:
        if not target_exists:
            storage.mkdir(target)
            created.append(target)
        for d in archive.directories():
            path = join(target, d)
            try:
                storage.mkdir(path)
                created.append(path)
            except AlreadyExists:
                if not storage.stat(path).is_dir:
                    raise
        for m in archive.members:
            if m.is_dir:
                continue
            path = join(target, m.name)
            writer = storage.open_write(path, size_hint=m.size, exclusive=exclusive)
            try:
                for data in archive.read_chunks(m):
                    writer.write(data)
                writer.commit()
            except BaseException:
                writer.abort()
                raise
            created.append(path)
    except (*_DAMAGED, StorageError, CarminError) as exc:
        _roll_back(storage, created, {target} | {join(target, d) for d in archive.directories()})
        if isinstance(exc, StorageError | CarminError):
            raise
        raise UnsafeArchive(f"the archive is damaged ({type(exc).__name__})") from None
    return created


def _roll_back(storage: Storage, created: list[str], folders: set[str]) -> None:
    """Remove what an unpacking created, newest first. A folder it made is removed only
    while empty: someone else may have put a file in it meanwhile (the very file that
    made an exclusive unpacking fail), and that file must stay."""
    from adapters.base import StorageError

    for path in reversed(created):
        with contextlib.suppress(StorageError):
            if path in folders:
                listing = storage.list(path)
                try:
                    if next(iter(listing), None) is not None:
                        continue
                finally:
                    close = getattr(listing, "close", None)
                    if close is not None:
                        close()
            storage.delete(path)


# --- directory → tar.gz, streamed ---------------------------------------------------


LinkFilter = Callable[[Entry], bool]


def _inside(path: str, top: str) -> bool:
    return not top or path == top or path.startswith(top + "/")


def walk(
    storage: Storage,
    path: str,
    follow: LinkFilter | None = None,
    real_root: str | None = None,
    _entered: set[str] | None = None,
) -> Iterator[Entry]:
    """Depth-first, lazily: only one listing iterator per depth is open at a time.

    Symbolic links (entries with a ``link_target``, adapters.base.LinkResolver) are left
    out when ``follow`` refuses them (out of the caller's scope). A linked directory is
    entered only if its target neither lies inside the tree being walked nor holds it
    (``real_root``: where the walk's root really is), and was not entered before: each
    target once, so a link loop or links to links cannot make the walk endless."""
    entered = set() if _entered is None else _entered
    for entry in storage.list(path):
        target = entry.link_target
        if target is not None:
            if follow is not None and not follow(entry):
                continue
            if entry.is_dir:
                looped = real_root is not None and (
                    _inside(target, real_root) or _inside(real_root, target)
                )
                if looped or target in entered:
                    continue  # inside the walk already, or holding it: a loop
                entered.add(target)
        yield entry
        if entry.is_dir:
            yield from walk(storage, entry.path, follow, real_root, entered)


def stream_tar_gz(
    storage: Storage,
    root: str,
    arcroot: str,
    level: int = 1,
    follow: LinkFilter | None = None,
    real_root: str | None = None,
) -> Iterator[bytes]:
    """A gzipped tarball of a directory, built on the fly.

    Tar is simple enough to emit by hand (header, data, padding to 512), which keeps this
    a plain generator with bounded memory; ``TarInfo.tobuf`` writes PAX headers for long
    or non-ASCII names. Compression level 1: the bottleneck must be the network, not zlib.
    A file whose size changes while it is streamed breaks the stream (raises), so a
    client never receives a tarball that looks complete but is not. ``follow`` and
    ``real_root``: see ``walk``."""
    gz = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = io.BytesIO()

    def emit(data: bytes) -> bytes:
        return gz.compress(data)

    now = time.time()
    info = tarfile.TarInfo(arcroot)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(now)
    yield emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
    prefix_len = len(root) + 1 if root else 0
    for entry in walk(storage, root, follow, real_root):
        name = f"{arcroot}/{entry.path[prefix_len:]}"
        info = tarfile.TarInfo(name)
        info.mtime = int(entry.mtime or now)
        if entry.is_dir:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            continue
        info.type, info.mode, info.size = tarfile.REGTYPE, 0o644, entry.size or 0
        yield emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        sent = 0
        for data in storage.open_read(entry.path):
            sent += len(data)
            if sent > info.size:
                raise OSError(f"{entry.path} grew while being archived")
            chunk = gz.compress(data)
            if chunk:
                yield chunk
        if sent != info.size:
            raise OSError(f"{entry.path} shrank while being archived")
        pad = (-sent) % tarfile.BLOCKSIZE
        if pad:
            yield emit(b"\0" * pad)
    out.write(gz.compress(b"\0" * tarfile.BLOCKSIZE * 2))
    out.write(gz.flush())
    yield out.getvalue()
