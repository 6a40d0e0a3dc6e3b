"""A local folder seen by the gateway: confinement to the root, links, reads, staging
(the behaviour is described in adapters/posix/__init__.py)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
import socket
import stat as stat_mod
from collections.abc import Iterator
from pathlib import Path

from adapters.base import (
    AlreadyExists,
    BackendUnavailable,
    Capabilities,
    Delegation,
    Entry,
    InvalidPath,
    IsADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    StorageError,
    join,
    parent_of,
    streamed_checksum,
)
from adapters.common import mime_type
from adapters.posix.errors import translate
from adapters.posix.md5_xattr import recall_md5, remember_md5
from adapters.posix.noreplace import rename_noreplace
from adapters.posix.write import PosixWriter

STAGING = ".fedgate-staging"
# Read size. The gateway reads one chunk ahead of the client, so a download holds about
# three: larger chunks cost memory per download (measured: docs/decisions.md, "Adapter
# packages").
CHUNK = 1024 * 1024


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PosixStorage:
    capabilities = Capabilities(native_checksums=frozenset(), inline_stat=True)

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise BackendUnavailable(f"mount root {self.root} is not a directory")
        self._staging_root = os.path.join(self.root, STAGING)
        self._staging: str | None = None

    # --- path confinement -----------------------------------------------------------

    def _full(self, path: str) -> str:
        """The on-disk path, after checking it cannot leave the root.

        The gateway already rejects ``..`` and friends; this is the second line: the
        fully resolved path (symlinks followed) must stay under the root."""
        if "\x00" in path or "\\" in path or path.startswith("/"):
            raise InvalidPath("invalid path")
        parts = path.split("/") if path else []
        if any(p in ("", ".", "..") for p in parts):
            raise InvalidPath("invalid path")
        if parts and parts[0] == STAGING:
            raise NotFound(f"{path}: no such file or directory")
        full = os.path.join(self.root, *parts)
        real = os.path.realpath(full)
        if real != self.root and not real.startswith(self.root + os.sep):
            raise PermissionDenied(f"{path}: points outside the mount")
        if real == self._staging_root or real.startswith(self._staging_root + os.sep):
            raise NotFound(f"{path}: no such file or directory")  # a link into staging
        return full

    def real_path(self, path: str, follow_last: bool = True) -> str:
        """Where ``path`` lands once links are followed, as a path inside the mount
        (adapters.base.LinkResolver). A link that leaves the root is PermissionDenied."""
        full = self._full(path)
        if not path:
            return ""
        if follow_last:
            real = os.path.realpath(full)
        else:
            head, name = os.path.split(full)
            real = os.path.join(os.path.realpath(head), name)
        if real == self.root:
            return ""
        if not real.startswith(self.root + os.sep):
            raise PermissionDenied(f"{path}: points outside the mount")
        return real[len(self.root) + 1 :]

    def staging_dir(self) -> str:
        if self._staging is None:
            mine = os.path.join(self._staging_root, f"{socket.gethostname()}-{os.getpid()}")
            os.makedirs(mine, exist_ok=True)
            self._staging = mine
        return self._staging

    def clean_stale_staging(self) -> int:
        """Remove staging folders of dead processes on this host; returns how many."""
        removed = 0
        prefix = socket.gethostname() + "-"
        try:
            children = os.listdir(self._staging_root)
        except FileNotFoundError:
            return 0
        for child in children:
            if not child.startswith(prefix):
                continue
            try:
                pid = int(child[len(prefix) :])
            except ValueError:
                continue
            if pid != os.getpid() and not _process_alive(pid):
                shutil.rmtree(os.path.join(self._staging_root, child), ignore_errors=True)
                removed += 1
        return removed

    # --- Storage --------------------------------------------------------------------

    def _entry(self, path: str, st: os.stat_result, link_target: str | None = None) -> Entry:
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        return Entry(
            path=path,
            is_dir=is_dir,
            size=None if is_dir else st.st_size,
            mtime=st.st_mtime,
            mime_type=None if is_dir else mime_type(path),
            link_target=link_target,
        )

    def stat(self, path: str) -> Entry:
        full = self._full(path)
        try:
            return self._entry(path, os.stat(full))
        except OSError as exc:
            raise translate(exc, path, self.root) from exc

    def list(self, path: str) -> Iterator[Entry]:
        full = self._full(path)
        try:
            it = os.scandir(full)
        except OSError as exc:
            raise translate(exc, path, self.root) from exc
        return self._iter_dir(path, it)

    def _iter_dir(self, path: str, it: Iterator[os.DirEntry[str]]) -> Iterator[Entry]:
        with it as entries:  # type: ignore[attr-defined]
            for d in entries:
                if not path and d.name == STAGING:
                    continue
                child = join(path, d.name)
                target = None
                try:
                    if d.is_symlink():
                        # Links out of the mount (or into staging) are hidden; the others
                        # say where they lead, for the caller's scope check.
                        target = self.real_path(child)
                    st = d.stat()
                except (OSError, StorageError):
                    continue  # dangling or escaping symlink, or vanished meanwhile
                yield self._entry(child, st, target)

    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        full = self._full(path)
        try:
            if os.path.isdir(full):
                raise IsADirectory(f"{path}: is a directory")
            f = open(full, "rb")  # noqa: SIM115 - closed by the generator
        except OSError as exc:
            raise translate(exc, path, self.root) from exc
        return self._read(f, start, end)

    @staticmethod
    def _read(f: object, start: int, end: int | None) -> Iterator[bytes]:
        import io

        assert isinstance(f, io.BufferedReader)
        with f:
            f.seek(start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                n = CHUNK if remaining is None else min(CHUNK, remaining)
                data = f.read(n)
                if not data:
                    return
                if remaining is not None:
                    remaining -= len(data)
                yield data

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> PosixWriter:
        if not path:
            raise IsADirectory("/: is a directory")
        full = self._full(path)
        parent = os.path.dirname(full)
        if not os.path.isdir(parent):
            if os.path.exists(parent):
                raise ParentNotFound(f"{parent_of(path)}: is not a directory")
            raise ParentNotFound(f"{parent_of(path) or '/'}: parent directory does not exist")
        if os.path.isdir(full):
            raise IsADirectory(f"{path}: is a directory")
        if exclusive and os.path.lexists(full):
            raise AlreadyExists(f"{path}: already exists")
        try:
            return PosixWriter(self.staging_dir(), path, full, self.stat, exclusive)
        except OSError as exc:
            raise translate(exc, path, self.root) from exc

    def mkdir(self, path: str) -> Entry:
        if not path:
            raise AlreadyExists("/: already exists")
        full = self._full(path)
        try:
            os.mkdir(full)
        except FileNotFoundError as exc:
            raise ParentNotFound(
                f"{parent_of(path) or '/'}: parent directory does not exist"
            ) from exc
        except NotADirectoryError as exc:
            raise ParentNotFound(f"{parent_of(path)}: is not a directory") from exc
        except OSError as exc:
            raise translate(exc, path, self.root) from exc
        return self.stat(path)

    def rename(self, src: str, dst: str, replace: bool = True) -> None:
        """Move within the mount (adapters.base.Renaming, for WebDAV MOVE): one
        rename(2), so a link moves as a link and no byte is copied; ``replace=False``
        never replaces what is at ``dst`` (AlreadyExists)."""
        if not src or not dst:
            raise PermissionDenied("the mount root cannot be moved")
        full_src, full_dst = self._full(src), self._full(dst)
        try:
            if replace:
                os.replace(full_src, full_dst)
            else:
                rename_noreplace(full_src, full_dst)
        except FileExistsError as exc:
            raise AlreadyExists(f"{dst}: already exists") from exc
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.lexists(full_src):
                if os.path.isdir(os.path.dirname(full_dst)):
                    # The parent is there: a folder cannot replace a file (ENOTDIR).
                    raise translate(exc, dst, self.root) from exc
                raise ParentNotFound(f"{parent_of(dst)}: parent does not exist") from exc
            raise translate(exc, src, self.root) from exc

    def delete(self, path: str) -> None:
        if not path:
            raise PermissionDenied("the mount root cannot be deleted")
        full = self._full(path)
        try:
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)
        except OSError as exc:
            raise translate(exc, path, self.root) from exc

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        if algorithm == "md5":
            cached = recall_md5(self._full(path))
            if cached is not None:
                return cached
        value = streamed_checksum(self.open_read(path), algorithm)
        if algorithm == "md5":
            remember_md5(self._full(path), value)
        return value

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        raise NotSupported("a local folder has no URL of its own")

    def local_path(self, path: str) -> Path:
        """The file on disk, for zero-copy serving by the gateway."""
        return Path(self._full(path))

    def close(self) -> None:
        pass
