"""The local folder's atomic upload: staged beside the target, renamed onto it on commit
(with RENAME_NOREPLACE for a create-only one, adapters/posix/noreplace.py)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import uuid
from collections.abc import Callable
from typing import Any

from adapters.base import AlreadyExists, Entry, IsADirectory, ParentNotFound
from adapters.posix.errors import translate
from adapters.posix.md5_xattr import remember_md5
from adapters.posix.noreplace import rename_noreplace


class PosixWriter:
    """An upload staged in ``staging`` (a folder on the target's filesystem, so the final
    rename is atomic), renamed onto ``target`` by ``commit``; ``on_commit(path)`` gives
    the committed file's entry (the storage's ``stat``)."""

    def __init__(
        self,
        staging: str,
        path: str,
        target: str,
        on_commit: Callable[[str], Entry],
        exclusive: bool,
    ) -> None:
        self._on_commit = on_commit
        self._path = path
        self._target = target
        self._exclusive = exclusive
        self._tmp = os.path.join(staging, uuid.uuid4().hex)
        self._file = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit/abort
        # None once bytes arrive without passing through write() (fill_from): nothing
        # is then remembered, and an md5 is computed when first asked for.
        self._md5: Any = hashlib.md5(usedforsecurity=False)
        self._md5_source: Callable[[], str | None] | None = None  # md5_from's
        self._done = False

    def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:  # a full disk, a spent quota: a storage error, not a crash
            raise translate(exc, self._path) from exc
        if self._md5 is not None:
            self._md5.update(data)

    def fill_from(self, source: str) -> int:
        """Copy a local file into this upload inside the kernel (copy_file_range, or
        sendfile across filesystems): a copy between two local mounts without the
        bytes ever entering the process (adapters.base.LocalFill). The bytes copied."""
        self._md5 = self._md5_source = None
        self._file.flush()
        with open(source, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            out, done = self._file.fileno(), 0
            while done < size:
                try:
                    n = os.copy_file_range(src.fileno(), out, size - done)
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP):
                        raise translate(exc, self._path) from exc
                    n = os.sendfile(out, src.fileno(), done, size - done)
                if n == 0:
                    break  # the source shrank meanwhile: the caller checks the count
                done += n
        return done

    def md5_from(self, source: Callable[[], str | None]) -> None:
        """The md5 to keep comes from ``source`` at commit (adapters.base.KeepsMd5): the
        gateway's digests hash every upload beside this thread, which then only copies
        the bytes instead of also running the slowest digest in series."""
        self._md5, self._md5_source = None, source

    def _md5_to_keep(self) -> str | None:
        if self._md5 is not None:
            return str(self._md5.hexdigest())
        return self._md5_source() if self._md5_source is not None else None

    def commit(self) -> Entry:
        try:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())  # delayed allocation: ENOSPC can come here
            except OSError as exc:
                raise translate(exc, self._path) from exc
            md5 = self._md5_to_keep()
            if md5:
                remember_md5(self._file.fileno(), md5)
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
                raise translate(exc, self._path) from exc
            self._done = True
            return self._on_commit(self._path)
        finally:
            if not self._done:
                self.abort()

    def abort(self) -> None:
        try:
            if not self._file.closed:
                # Flushes what is still buffered, which fails on a full disk: the file is
                # closed all the same, and the staged bytes are removed below either way.
                self._file.close()
        except OSError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
