"""The iRODS adapter's atomic writer: the bytes go to a hidden temporary data object in
the target's collection, renamed over the target on commit (see adapters/irods/__init__.py)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from adapters.base import (
    AlreadyExists,
    Entry,
    IsADirectory,
    NotFound,
    ParentNotFound,
    PermissionDenied,
    StorageError,
    parent_of,
)
from adapters.irods.errors import translate
from adapters.irods.pipeline import PipelinedWrites

WRITE_BLOCK = 1024 * 1024  # bytes per iRODS write call

log = logging.getLogger("adapters.irods")

# Temporary objects (uploads, and the old copy during a replace) start with this: never
# listed, unreachable through paths.
TMP_PREFIX = ".fedgate-tmp-"


class Catalog(Protocol):
    """What a writer needs of its storage (IrodsStorage): catalog lookups, the rename
    and the unlink, on absolute iRODS paths; ``path`` is the mount path for messages."""

    def is_collection(self, full: str) -> bool: ...

    def is_object(self, full: str) -> bool: ...

    def move_object(self, src: str, dst: str, path: str) -> None: ...

    def unlink_object(self, full: str) -> None: ...

    def stat(self, path: str) -> Entry: ...


class IrodsWriter:
    # Every iRODS write is a round trip: the gateway hands over 1 MiB at a time (smaller
    # blocks cost write rate: docs/decisions.md, "Adapter packages").
    block_size = WRITE_BLOCK

    def __init__(
        self,
        catalog: Catalog,
        path: str,
        full: str,
        tmp: str,
        fh: Any,
        exclusive: bool = False,
    ) -> None:
        self._catalog = catalog
        # Create only: iRODS' rename never replaces (it answers CAT_NAME_EXISTS_AS_...),
        # so the commit is the rename alone, and a name taken meanwhile is AlreadyExists.
        self._exclusive = exclusive
        self._path = path
        self._full = full
        self._tmp = tmp
        self._fh: Any = fh
        self._pipeline = PipelinedWrites.attach(fh)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._done = False

    def write(self, data: bytes) -> None:
        # Every iRODS write is a round trip: send blocks of WRITE_BLOCK, whatever size the
        # gateway hands us.
        self._pending.append(data)
        self._pending_size += len(data)
        if self._pending_size >= WRITE_BLOCK:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        block = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        try:
            if self._pipeline is not None:
                self._pipeline.write(block)
            else:
                self._fh.write(block)
        except Exception as exc:
            raise translate(exc, self._path) from exc

    def commit(self) -> Entry:
        st = self._catalog
        try:
            self._flush()
            if self._pipeline is not None:
                self._pipeline.drain()
            fh, self._fh = self._fh, None
            fh.close()
            if st.is_collection(self._full):
                raise IsADirectory(f"{self._path}: is a directory")
            if self._exclusive:
                try:
                    st.move_object(self._tmp, self._full, self._path)
                except NotFound as exc:
                    raise ParentNotFound(f"{self._path}: parent directory vanished") from exc
            elif st.is_object(self._full):
                self._replace()
            else:
                try:
                    st.move_object(self._tmp, self._full, self._path)
                except AlreadyExists:
                    # Appeared meanwhile, or exists but this user cannot see it.
                    if not st.is_object(self._full):
                        raise PermissionDenied(f"{self._path}: permission denied") from None
                    self._replace()
                except NotFound as exc:
                    raise ParentNotFound(f"{self._path}: parent directory vanished") from exc
            self._done = True
            return st.stat(self._path)
        except StorageError:
            raise
        except Exception as exc:
            raise translate(exc, self._path) from exc
        finally:
            if not self._done:
                self.abort()

    def _replace(self) -> None:
        st = self._catalog
        backup = f"{parent_of(self._full)}/{TMP_PREFIX}old-{uuid.uuid4().hex}"
        st.move_object(self._full, backup, self._path)
        try:
            st.move_object(self._tmp, self._full, self._path)
        except BaseException:
            try:
                st.move_object(backup, self._full, self._path)
            except Exception:
                log.error("iRODS: could not restore %s after a failed replace", self._path)
            raise
        try:
            st.unlink_object(backup)
        except Exception:
            log.warning("iRODS: could not remove the replaced copy of %s", self._path)

    def abort(self) -> None:
        self._pending, self._pending_size = [], 0
        fh, self._fh = self._fh, None
        if fh is not None and self._pipeline is not None:
            self._pipeline.discard()
        if fh is not None:
            try:
                fh.close()
            except Exception:
                log.debug("closing an aborted iRODS upload failed", exc_info=True)
        if self._done or self._tmp == "":
            return
        tmp, self._tmp = self._tmp, ""
        try:
            self._catalog.unlink_object(tmp)
        except Exception as exc:
            if not isinstance(translate(exc, ""), NotFound):
                log.warning("iRODS: could not remove an aborted upload for %s", self._path)
