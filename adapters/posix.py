"""A folder on local disk as a mount.

Uploads are written into a staging folder inside the mount root (same filesystem, so the
final rename is atomic) and renamed over the target only once complete; an exclusive
(create-only) upload is renamed with RENAME_NOREPLACE instead of ``os.replace``, so a file
that appeared meanwhile is kept (adapters/posix_noreplace.py). The staging folder is
hidden from listings and unreachable through paths, links into it included. Each process
stages in its own subfolder (host + pid); a process that starts removes the subfolders of
dead processes on the same host, so uploads cut by a crash leave no leftovers.

Symbolic links already on the disk are followed only when they stay inside the root.
``real_path`` tells the gateway where a path lands, so that it authorises that too
(adapters.base.LinkResolver), and a listed link carries its resolved path
(``Entry.link_target``) for the same check.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import mimetypes
import os
import shutil
import socket
import stat as stat_mod
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from adapters.base import (
    AlreadyExists,
    BackendUnavailable,
    Capabilities,
    Credential,
    Delegation,
    Entry,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    Storage,
    StorageError,
    join,
    parent_of,
    streamed_checksum,
)
from adapters.posix_noreplace import rename_noreplace

STAGING = ".fedgate-staging"
MD5_XATTR = "user.fedgate.md5"
# Read size. The gateway reads one chunk ahead of the client (gateway/block_pipe.py), so a
# download holds about three: 2 MiB chunks put 16 parallel downloads at 157 MB RSS.
CHUNK = 1024 * 1024


def _mime(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _translate(exc: OSError, path: str, root: str | None = None) -> StorageError:
    code = exc.errno
    shown = path or "/"
    if code == errno.ENOENT:
        if root is not None and not os.path.isdir(root):
            # The operator's folder is gone (unmounted, deleted): not the caller's 404.
            return BackendUnavailable("the mount's root folder is missing on the gateway")
        return NotFound(f"{shown}: no such file or directory")
    if code == errno.EEXIST:
        return AlreadyExists(f"{shown}: already exists")
    if code == errno.ENOTDIR:
        return NotADirectory(f"{shown}: not a directory")
    if code == errno.EISDIR:
        return IsADirectory(f"{shown}: is a directory")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"{shown}: permission denied")
    if code == errno.ENAMETOOLONG:
        return InvalidPath(f"{shown}: name too long")
    if code == errno.ELOOP:
        # A link loop (or a chain too long) under the caller's path: nothing is there to
        # serve, and it is the folder's content, not the gateway, that is at fault.
        return NotFound(f"{shown}: too many levels of symbolic links")
    return StorageError(f"{shown}: {os.strerror(code) if code else 'I/O error'}")


def _remember_md5(target: int | str, digest: str) -> None:
    """Keep a file's md5 in an extended attribute, valid while size and mtime hold.

    Hashing a large file costs a second of CPU per GiB; jobs ask for the md5 of every
    input they verify. Written on upload (the hash is computed while the bytes stream
    in) and on first request. Filesystems without user xattrs just recompute."""
    try:
        st = os.stat(target)
        value = f"{st.st_size}:{st.st_mtime_ns}:{digest}".encode()
        os.setxattr(target, MD5_XATTR, value)
    except OSError:
        pass


def _recall_md5(full: str) -> str | None:
    try:
        size, mtime_ns, digest = os.getxattr(full, MD5_XATTR).decode().split(":")
        st = os.stat(full)
    except (OSError, ValueError):
        return None
    if int(size) == st.st_size and int(mtime_ns) == st.st_mtime_ns and len(digest) == 32:
        return digest
    return None


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PosixWriter:
    def __init__(
        self, storage: PosixStorage, path: str, target: str, exclusive: bool = False
    ) -> None:
        self._storage = storage
        self._path = path
        self._target = target
        self._exclusive = exclusive
        staging = storage.staging_dir()
        self._tmp = os.path.join(staging, uuid.uuid4().hex)
        self._file = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit/abort
        # None once bytes arrive without passing through write() (fill_from): nothing
        # is then remembered, and an md5 is computed when first asked for.
        self._md5: Any = hashlib.md5(usedforsecurity=False)
        self._done = False

    def write(self, data: bytes) -> None:
        self._file.write(data)
        if self._md5 is not None:
            self._md5.update(data)

    def fill_from(self, source: str) -> int:
        """Copy a local file into this upload inside the kernel (copy_file_range, or
        sendfile across filesystems): a copy between two local mounts without the
        bytes ever entering the process (adapters.base.LocalFill). The bytes copied."""
        self._md5 = None
        self._file.flush()
        with open(source, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            out, done = self._file.fileno(), 0
            while done < size:
                try:
                    n = os.copy_file_range(src.fileno(), out, size - done)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise _translate(exc, self._path) from exc
                    n = os.sendfile(out, src.fileno(), done, size - done)
                if n == 0:
                    break  # the source shrank meanwhile: the caller checks the count
                done += n
        return done

    def md5_hexdigest(self) -> str | None:
        """The md5 of the bytes written so far (None when some were not written through
        ``write``): a wrapper hashing the upload too (gateway/digesting.py) takes it
        instead of running a second md5 pass, the slowest of its digests."""
        return self._md5.hexdigest() if self._md5 is not None else None

    def commit(self) -> Entry:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            if self._md5 is not None:
                _remember_md5(self._file.fileno(), self._md5.hexdigest())
            self._file.close()
            # Re-check at commit time: the parent may have vanished, or the target may
            # have become a directory, while the upload was streaming.
            if os.path.isdir(self._target):
                raise IsADirectory(f"{self._path}: is a directory")
            try:
                if self._exclusive:
                    rename_noreplace(self._tmp, self._target)
                else:
                    os.replace(self._tmp, self._target)
            except FileExistsError as exc:
                raise AlreadyExists(f"{self._path}: already exists") from exc
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    raise ParentNotFound(f"{self._path}: parent directory does not exist") from exc
                raise _translate(exc, self._path) from exc
            self._done = True
            return self._storage.stat(self._path)
        finally:
            if not self._done:
                self.abort()

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


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
            mime_type=None if is_dir else _mime(path),
            link_target=link_target,
        )

    def stat(self, path: str) -> Entry:
        full = self._full(path)
        try:
            return self._entry(path, os.stat(full))
        except OSError as exc:
            raise _translate(exc, path, self.root) from exc

    def list(self, path: str) -> Iterator[Entry]:
        full = self._full(path)
        try:
            it = os.scandir(full)
        except OSError as exc:
            raise _translate(exc, path, self.root) from exc
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
            raise _translate(exc, path, self.root) from exc
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
            return PosixWriter(self, path, full, exclusive)
        except OSError as exc:
            raise _translate(exc, path, self.root) from exc

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
            raise _translate(exc, path, self.root) from exc
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
                raise ParentNotFound(f"{parent_of(dst) or '/'}: parent does not exist") from exc
            raise _translate(exc, src, self.root) from exc

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
            raise _translate(exc, path, self.root) from exc

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        if algorithm == "md5":
            cached = _recall_md5(self._full(path))
            if cached is not None:
                return cached
        value = streamed_checksum(self.open_read(path), algorithm)
        if algorithm == "md5":
            _remember_md5(self._full(path), value)
        return value

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        raise NotSupported("a local folder has no URL of its own")

    def local_path(self, path: str) -> Path:
        """The file on disk, for zero-copy serving by the gateway."""
        return Path(self._full(path))

    def close(self) -> None:
        pass


class PosixAdapter:
    type_name = "posix"
    uses_credentials = False  # the gateway's own file access; no per-user credential

    def __init__(self, root: str | os.PathLike[str], create: bool = False) -> None:
        if create:
            os.makedirs(root, exist_ok=True)
        self._storage = PosixStorage(root)
        self._storage.clean_stale_staging()

    @property
    def root(self) -> str:
        return self._storage.root

    def bind(self, credential: Credential | None) -> Storage:
        return self._storage

    def check(self) -> None:
        if not os.path.isdir(self._storage.root):
            from adapters.base import BackendUnavailable

            raise BackendUnavailable("mount root is gone")

    def close(self) -> None:
        pass


def create(options: Mapping[str, Any]) -> PosixAdapter:
    """Options: ``root`` (folder, required), ``create`` (make it if missing, default false)."""
    if "root" not in options:
        raise ValueError("a posix mount needs a 'root' folder")
    return PosixAdapter(str(options["root"]), create=bool(options.get("create", False)))
