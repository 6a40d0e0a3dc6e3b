"""One iRODS collection seen with one user's session: catalog lookups, listing, reads,
writes, tickets (the behaviour is described in adapters/irods/__init__.py)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import uuid
from collections.abc import Iterator
from typing import Any

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendUnavailable,
    Capabilities,
    Delegation,
    Entry,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    StorageError,
    parent_of,
    streamed_checksum,
)
from adapters.common import mime_type
from adapters.irods.client import irods_library
from adapters.irods.errors import translate
from adapters.irods.tickets import Server, issue_ticket, revoke_ticket
from adapters.irods.write import TMP_PREFIX, IrodsWriter

log = logging.getLogger("adapters.irods")

# Read size: each read is one request/answer with the server, and every chunk costs the
# gateway a thread hop and a socket write, so reads are larger than writes (which stay as
# the gateway hands them: python-irodsclient writes large blocks slower). Measured:
# docs/decisions.md, "Adapter packages".
CHUNK = 4 * 1024 * 1024


def timestamp(value: Any) -> float | None:
    """A catalog time (a datetime, or epoch seconds as text) as epoch seconds."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class ObjectReader:
    """Iterator over an open data object; closes it (and frees the pooled connection)
    when exhausted, closed, or garbage-collected without being consumed."""

    def __init__(self, fh: Any, path: str, start: int, end: int | None) -> None:
        self._fh: Any = fh
        self._path = path
        self._remaining = None if end is None else max(0, end - start)
        self._start = start

    def __iter__(self) -> ObjectReader:
        return self

    def __next__(self) -> bytes:
        if self._fh is None:
            raise StopIteration
        try:
            if self._start:
                self._fh.seek(self._start)
                self._start = 0
            n = CHUNK if self._remaining is None else min(CHUNK, self._remaining)
            data = self._fh.read(n) if n > 0 else b""
        except Exception as exc:
            self.close()
            raise translate(exc, self._path) from exc
        if not data:
            self.close()
            raise StopIteration
        if self._remaining is not None:
            self._remaining -= len(data)
        return bytes(data)

    def close(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except Exception:  # the stream is over either way
                log.debug("closing an iRODS read stream failed", exc_info=True)

    def __del__(self) -> None:
        self.close()


class IrodsStorage:
    capabilities = Capabilities(
        native_checksums=frozenset({"sha256"}),
        native_delegation=True,
        read_ahead=1,  # a read is one request to the server: the next overlaps the send
    )

    # Kept beside capabilities.read_ahead until the gateway reads the capability.
    read_ahead = capabilities.read_ahead

    def __init__(self, session: Any, root: str, page_size: int, server: Server) -> None:
        self.session = session
        self.root = root
        self.page_size = page_size
        self.server = server

    # --- paths --------------------------------------------------------------------------

    def _full(self, path: str) -> str:
        if "\x00" in path or "\\" in path or path.startswith("/"):
            raise InvalidPath("invalid path")
        parts = path.split("/") if path else []
        if any(p in ("", ".", "..") for p in parts):
            raise InvalidPath("invalid path")
        if any(p.startswith(TMP_PREFIX) for p in parts):
            raise NotFound(f"{path}: no such file or directory")
        return "/".join([self.root, *parts])

    def _row(self, query: Any, path: str) -> Any:
        try:
            return query.first()
        except Exception as exc:
            raise translate(exc, path) from exc

    def _obj_row(self, full: str) -> Any:
        m = irods_library().models
        parent, name = full.rsplit("/", 1)
        q = self.session.query(m.DataObject.size, m.DataObject.modify_time)
        q = q.filter(m.Collection.name == (parent or "/")).filter(m.DataObject.name == name)
        return self._row(q, full)

    def _coll_row(self, full: str) -> Any:
        m = irods_library().models
        q = self.session.query(m.Collection.name, m.Collection.modify_time)
        return self._row(q.filter(m.Collection.name == full), full)

    def is_object(self, full: str) -> bool:
        return self._obj_row(full) is not None

    def is_collection(self, full: str) -> bool:
        return self._coll_row(full) is not None

    def move_object(self, src: str, dst: str, path: str) -> None:
        """Rename a data object (DATA_OBJ_RENAME; never replaces: CAT_NAME_EXISTS_...)."""
        from irods.api_number import api_number
        from irods.message import FileOpenRequest, ObjCopyRequest, StringStringMap, iRODSMessage

        def inp(p: str) -> Any:
            return FileOpenRequest(
                objPath=p,
                createMode=0,
                openFlags=0,
                offset=0,
                dataSize=0,
                numThreads=0,
                oprType=11,
                KeyValPair_PI=StringStringMap(),
            )

        body = ObjCopyRequest(srcDataObjInp_PI=inp(src), destDataObjInp_PI=inp(dst))
        msg = iRODSMessage("RODS_API_REQ", msg=body, int_info=api_number["DATA_OBJ_RENAME_AN"])
        try:
            with self.session.pool.get_connection() as conn:
                conn.send(msg)
                conn.recv()
        except Exception as exc:
            raise translate(exc, path) from exc

    # --- Storage ------------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        m = irods_library().models
        full = self._full(path)
        if path:
            row = self._obj_row(full)
            if row is not None:
                return Entry(
                    path=path,
                    is_dir=False,
                    size=int(row[m.DataObject.size] or 0),
                    mtime=timestamp(row[m.DataObject.modify_time]),
                    mime_type=mime_type(path),
                )
        row = self._coll_row(full)
        if row is None:
            raise NotFound(f"{path or '/'}: no such file or directory")
        return Entry(path=path, is_dir=True, mtime=timestamp(row[m.Collection.modify_time]))

    def list(self, path: str) -> Iterator[Entry]:
        full = self._full(path)
        if not self.is_collection(full):
            if path and self.is_object(full):
                raise NotADirectory(f"{path}: not a directory")
            raise NotFound(f"{path or '/'}: no such file or directory")
        return self._iter_list(path, full)

    def _iter_list(self, path: str, full: str) -> Iterator[Entry]:
        m = irods_library().models
        prefix = f"{path}/" if path else ""
        colls = self.session.query(m.Collection.name, m.Collection.modify_time)
        colls = colls.filter(m.Collection.parent_name == full).limit(self.page_size)
        objs = self.session.query(m.DataObject.name, m.DataObject.size, m.DataObject.modify_time)
        objs = objs.filter(m.Collection.name == full).limit(self.page_size)
        try:
            for batch in colls.get_batches():
                for row in batch:
                    name = row[m.Collection.name].rsplit("/", 1)[-1]
                    if name and not name.startswith(TMP_PREFIX):
                        yield Entry(
                            prefix + name, True, mtime=timestamp(row[m.Collection.modify_time])
                        )
            for batch in objs.get_batches():
                for row in batch:
                    name = row[m.DataObject.name]
                    if name.startswith(TMP_PREFIX):
                        continue
                    yield Entry(
                        prefix + name,
                        False,
                        size=int(row[m.DataObject.size] or 0),
                        mtime=timestamp(row[m.DataObject.modify_time]),
                        mime_type=mime_type(name),
                    )
        except StorageError:
            raise
        except Exception as exc:
            raise translate(exc, path) from exc

    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if not path:
            raise IsADirectory("/: is a directory")
        full = self._full(path)
        try:
            fh = self.session.data_objects.open(full, "r", create=False)
        except Exception as exc:
            err = translate(exc, path)
            # Servers differ in what opening a collection answers; ask the catalog.
            if not isinstance(
                err, BackendUnavailable | AuthenticationFailed
            ) and self.is_collection(full):
                raise IsADirectory(f"{path}: is a directory") from exc
            raise err from exc
        return ObjectReader(fh, path, start, end)

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> IrodsWriter:
        if not path:
            raise IsADirectory("/: is a directory")
        full = self._full(path)
        parent_full = full.rsplit("/", 1)[0]
        if not self.is_collection(parent_full):
            raise ParentNotFound(f"{parent_of(path) or '/'}: parent directory does not exist")
        if self.is_collection(full):
            raise IsADirectory(f"{path}: is a directory")
        if exclusive and self.is_object(full):
            raise AlreadyExists(f"{path}: already exists")
        tmp = f"{parent_full}/{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fh = self.session.data_objects.open(tmp, "w")
        except Exception as exc:
            raise translate(exc, path) from exc
        return IrodsWriter(self, path, full, tmp, fh, exclusive)

    def mkdir(self, path: str) -> Entry:
        if not path:
            raise AlreadyExists("/: already exists")
        full = self._full(path)
        parent_full = full.rsplit("/", 1)[0]
        if not self.is_collection(parent_full):
            raise ParentNotFound(f"{parent_of(path) or '/'}: parent directory does not exist")
        if self.is_collection(full) or self.is_object(full):
            raise AlreadyExists(f"{path}: already exists")
        try:
            self.session.collections.create(full, recurse=False)
        except Exception as exc:
            raise translate(exc, path) from exc
        return self.stat(path)

    def delete(self, path: str) -> None:
        if not path:
            raise PermissionDenied("the mount root cannot be deleted")
        full = self._full(path)
        try:
            if self.is_object(full):
                self.session.data_objects.unlink(full, force=True)
            elif self.is_collection(full):
                self.session.collections.remove(full, recurse=True, force=True)
            else:
                raise NotFound(f"{path}: no such file or directory")
        except StorageError:
            raise
        except Exception as exc:
            raise translate(exc, path) from exc

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        full = self._full(path)
        if algorithm == "sha256":
            if not path or not self.is_object(full):
                self.stat(path)  # NotFound, or a directory:
                raise IsADirectory(f"{path or '/'}: is a directory")
            try:
                native = str(self.session.data_objects.chksum(full) or "")
            except Exception as exc:
                raise translate(exc, path) from exc
            if native.startswith("sha2:"):
                try:
                    return base64.b64decode(native[5:], validate=True).hex()
                except binascii.Error:
                    pass  # fall back to computing it
        return streamed_checksum(self.open_read(path), algorithm)

    def unlink_object(self, full: str) -> None:
        self.session.data_objects.unlink(full, force=True)

    # --- tickets (adapters/irods/tickets.py) ---------------------------------------------

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        return self.delegate(path, method, expires_at)

    def delegate(
        self,
        path: str,
        method: str,
        expires_at: dt.datetime,
        uses: int | None = None,
        create_only: bool = False,
    ) -> Delegation:
        """A read ticket (GET) or a write ticket (PUT) on one data object, usable ``uses``
        times (None: unlimited; the gateway takes it from the fedgate token's own counter).

        A write ticket's object is created empty first, so the ticket covers that object
        and not its collection; ``create_only``: the object must not exist, and the server
        refuses the create if it appeared since (DATA_OBJ_CREATE without the force flag),
        so the ticket never covers a file the token could not replace."""
        method = method.upper()
        if method in ("GET", "HEAD"):
            self.stat(path)
            return self._ticket(path, "read", expires_at, uses, method)
        if method != "PUT":
            raise NotSupported(f"no iRODS ticket for method {method}")
        full = self._full(path)
        if self.is_collection(full):
            raise IsADirectory(f"{path or '/'}: is a directory")
        if create_only or not self.is_object(full):
            if not self.is_collection(full.rsplit("/", 1)[0]):
                raise ParentNotFound(f"{parent_of(path) or '/'}: parent does not exist")
            try:
                if create_only:
                    self.session.data_objects.create(full, force=False)
                else:
                    self.session.data_objects.open(full, "w").close()
            except Exception as exc:
                if type(exc).__name__ == "DataObjectExistsAtLogicalPath":
                    raise AlreadyExists(f"{path}: already exists") from exc
                raise translate(exc, path) from exc
        return self._ticket(path, "write", expires_at, uses, method)

    def revoke_delegation(self, delegation: Delegation) -> None:
        """Delete the ticket of a delegation from ``delegate``/``presign`` (NotFound if gone)."""
        revoke_ticket(self.session, delegation.value)

    def issue_ticket(
        self, path: str, mode: str, expires_at: dt.datetime, uses: int | None = None
    ) -> Delegation:
        """Mint an iRODS ticket ("read" or "write") on ``path`` that expires at
        ``expires_at`` (rounded down to the second), usable ``uses`` times if given."""
        return self._ticket(path, mode, expires_at, uses, None)

    def revoke_ticket(self, ticket: str) -> None:
        """Delete a ticket; NotFound if it does not exist (any more)."""
        revoke_ticket(self.session, ticket)

    def _ticket(
        self, path: str, mode: str, expires_at: dt.datetime, uses: int | None, method: str | None
    ) -> Delegation:
        full = self._full(path)
        return issue_ticket(self.session, self.server, full, path, mode, expires_at, uses, method)

    def close(self) -> None:
        """Sessions are pooled by the adapter; a view has nothing of its own."""
