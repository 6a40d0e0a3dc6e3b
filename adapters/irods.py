"""An iRODS collection as a mount, through python-irodsclient (imported lazily).

Mount options (TOML)::

    host            iRODS server host (required)
    port            iRODS port (default 1247)
    zone            iRODS zone (required)
    root            absolute collection the mount shows, e.g. "/tempZone/home/alice/data"
                    (required; every path stays below it)
    auth_scheme     "native" (default) or "pam" (PAM password; needs ssl_ca_file, since
                    python-irodsclient refuses to send a PAM password in clear)
    user, password  optional service credential, used by bind(None) (never logged)
    timeout         socket timeout in seconds for connect and every reply (default 30)
    page_size       GenQuery rows per page when listing (default 500, iRODS' own cap)
    idle_timeout    pooled sessions unused this long are closed (seconds, default 300)
    ssl_ca_file     if set, require TLS (CS_NEG_REQUIRE) and verify the server with this CA
    default_resource  optional resource for new data objects

Credentials: kind ``user_password`` with fields ``user`` and ``password``.

Writes stream into a hidden temporary data object in the target's collection
(``.fedgate-tmp-<hex>``, never listed and unreachable through paths) and are renamed
over the target on commit. iRODS cannot rename onto an existing object, so replacing a
file is: rename the old object aside (hidden name), rename the upload into place, then
unlink the old one — if the second rename fails the old object is renamed back. At no
point is the old content deleted before the new content is in place; a reader can see the
path missing for the short instant between the two renames.

Listing pages through GenQuery (``Query.get_batches``): sub-collections, then data
objects, one page (``page_size`` rows) in memory at a time. An object with several
replicas whose sizes differ is listed once per distinct (name, size, mtime).

Checksums: iRODS' native ``sha2:<base64>`` is served as ``sha256`` (lowercase hex); md5
and adler32 are computed by streaming. ``presign`` and ``issue_ticket`` mint iRODS
tickets (read for GET, write for PUT) that expire at ``expires_at`` (rounded down to the
second); a write ticket for a missing path first creates an empty object there, so that
the ticket covers that one object and not its whole collection.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import inspect
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from adapters import _irods_tickets
from adapters._irods_io import (
    TMP_PREFIX,
    IrodsWriter,
    _irods,
    _mime,
    _Reader,
    _ts,
    new_session,
    translate,
)
from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    Capabilities,
    Credential,
    Delegation,
    Entry,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    ParentNotFound,
    PermissionDenied,
    Storage,
    StorageError,
    parent_of,
    streamed_checksum,
)

__all__ = ["TMP_PREFIX", "IrodsAdapter", "IrodsStorage", "IrodsWriter", "create", "translate"]


class IrodsStorage:
    capabilities = Capabilities(
        native_checksums=frozenset({"sha256"}),
        native_delegation=True,
    )

    read_ahead = 1  # a read is one request to the server: the next overlaps the send

    def __init__(self, adapter: IrodsAdapter, session: Any) -> None:
        self.adapter = adapter
        self.session = session
        self.root = adapter.root
        self.page_size = adapter.page_size

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
        m = _irods().models
        parent, name = full.rsplit("/", 1)
        q = self.session.query(m.DataObject.size, m.DataObject.modify_time)
        q = q.filter(m.Collection.name == (parent or "/")).filter(m.DataObject.name == name)
        return self._row(q, full)

    def _coll_row(self, full: str) -> Any:
        m = _irods().models
        q = self.session.query(m.Collection.name, m.Collection.modify_time)
        return self._row(q.filter(m.Collection.name == full), full)

    def _is_obj(self, full: str) -> bool:
        return self._obj_row(full) is not None

    def _is_coll(self, full: str) -> bool:
        return self._coll_row(full) is not None

    def _rename(self, src: str, dst: str, path: str) -> None:
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
        m = _irods().models
        full = self._full(path)
        if path:
            row = self._obj_row(full)
            if row is not None:
                return Entry(
                    path=path,
                    is_dir=False,
                    size=int(row[m.DataObject.size] or 0),
                    mtime=_ts(row[m.DataObject.modify_time]),
                    mime_type=_mime(path),
                )
        row = self._coll_row(full)
        if row is None:
            raise NotFound(f"{path or '/'}: no such file or directory")
        return Entry(path=path, is_dir=True, mtime=_ts(row[m.Collection.modify_time]))

    def list(self, path: str) -> Iterator[Entry]:
        full = self._full(path)
        if not self._is_coll(full):
            if path and self._is_obj(full):
                raise NotADirectory(f"{path}: not a directory")
            raise NotFound(f"{path or '/'}: no such file or directory")
        return self._iter_list(path, full)

    def _iter_list(self, path: str, full: str) -> Iterator[Entry]:
        m = _irods().models
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
                        yield Entry(prefix + name, True, mtime=_ts(row[m.Collection.modify_time]))
            for batch in objs.get_batches():
                for row in batch:
                    name = row[m.DataObject.name]
                    if name.startswith(TMP_PREFIX):
                        continue
                    yield Entry(
                        prefix + name,
                        False,
                        size=int(row[m.DataObject.size] or 0),
                        mtime=_ts(row[m.DataObject.modify_time]),
                        mime_type=_mime(name),
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
            if not isinstance(err, BackendUnavailable | AuthenticationFailed) and self._is_coll(
                full
            ):
                raise IsADirectory(f"{path}: is a directory") from exc
            raise err from exc
        return _Reader(fh, path, start, end)

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> IrodsWriter:
        if not path:
            raise IsADirectory("/: is a directory")
        full = self._full(path)
        parent_full = full.rsplit("/", 1)[0]
        if not self._is_coll(parent_full):
            raise ParentNotFound(f"{parent_of(path) or '/'}: parent directory does not exist")
        if self._is_coll(full):
            raise IsADirectory(f"{path}: is a directory")
        if exclusive and self._is_obj(full):
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
        if not self._is_coll(parent_full):
            raise ParentNotFound(f"{parent_of(path) or '/'}: parent directory does not exist")
        if self._is_coll(full) or self._is_obj(full):
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
            if self._is_obj(full):
                self.session.data_objects.unlink(full, force=True)
            elif self._is_coll(full):
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
            if not path or not self._is_obj(full):
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

    # --- tickets (adapters/_irods_tickets.py) ---------------------------------------------

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        return _irods_tickets.presign(self, path, method, expires_at)

    def delegate(
        self,
        path: str,
        method: str,
        expires_at: dt.datetime,
        uses: int | None = None,
        create_only: bool = False,
    ) -> Delegation:
        """``presign`` with a use count (None: unlimited), taken by the gateway from the
        fedgate token's own counter; a create-only token's PUT ticket is for an object
        created for it (AlreadyExists if one is there) and gets 1 use (one open)."""
        return _irods_tickets.presign(self, path, method, expires_at, uses, create_only)

    def revoke_delegation(self, delegation: Delegation) -> None:
        """Delete the ticket of a delegation from ``delegate``/``presign`` (NotFound if gone)."""
        _irods_tickets.revoke_ticket(self, delegation.value)

    def issue_ticket(
        self, path: str, mode: str, expires_at: dt.datetime, uses: int | None = None
    ) -> Delegation:
        """Mint an iRODS ticket ("read" or "write") on ``path`` that expires at
        ``expires_at`` (rounded down to the second), usable ``uses`` times if given."""
        return _irods_tickets.issue_ticket(self, path, mode, expires_at, uses)

    def revoke_ticket(self, ticket: str) -> None:
        """Delete a ticket; NotFound if it does not exist (any more)."""
        _irods_tickets.revoke_ticket(self, ticket)

    def close(self) -> None:
        """Sessions are pooled by the adapter; a view has nothing of its own."""


class IrodsAdapter:
    type_name = "irods"

    def __init__(
        self,
        host: str,
        zone: str,
        root: str,
        port: int = 1247,
        auth_scheme: str = "native",
        user: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        page_size: int = 500,
        idle_timeout: float = 300.0,
        ssl_ca_file: str | None = None,
        default_resource: str | None = None,
    ) -> None:
        if not root.startswith("/") or "/.." in root or "\x00" in root:
            raise ValueError("root must be an absolute iRODS collection path")
        if auth_scheme not in ("native", "pam"):
            raise ValueError("auth_scheme must be 'native' or 'pam'")
        self.host, self.port, self.zone = host, int(port), zone
        self.root = root.rstrip("/") or "/"
        self.auth_scheme = auth_scheme
        self._service = (user, password) if user else None
        self.timeout = float(timeout)
        self.page_size = max(1, min(int(page_size), 500))
        self.idle_timeout = float(idle_timeout)
        self.ssl_ca_file = ssl_ca_file
        self.default_resource = default_resource
        self._sessions: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def _key(self, user: str, password: str) -> str:
        material = "\0".join([self.auth_scheme, user, password])
        return hashlib.sha256(material.encode()).hexdigest()

    def _session(self, user: str, password: str) -> Any:
        key = self._key(user, password)
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            session = self._sessions.get(key, (None, 0.0))[0]
            if session is None:
                session = new_session(self, user, password)
            self._sessions[key] = (session, now)
        return session

    def _sweep(self, now: float) -> None:
        for key, (session, last) in list(self._sessions.items()):
            # A session still streaming (active connection) is left alone.
            if now - last > self.idle_timeout and not session.pool.active:
                del self._sessions[key]
                session.cleanup()

    def bind(self, credential: Credential | None) -> Storage:
        if credential is None:
            if self._service is None:
                raise AuthenticationFailed("no credential for this mount")
            user, password = self._service[0] or "", self._service[1] or ""
        else:
            if credential.kind != "user_password":
                raise AuthenticationFailed(
                    f"iRODS needs a user_password credential, not {credential.kind}"
                )
            user = credential.fields.get("user", "")
            password = credential.fields.get("password", "")
            if not user:
                raise AuthenticationFailed("credential has no user")
        return IrodsStorage(self, self._session(user, password))

    def check(self) -> None:
        """Reachability only: open a TCP connection to the iRODS port."""
        import socket

        try:
            socket.create_connection((self.host, self.port), timeout=min(self.timeout, 5)).close()
        except TimeoutError as exc:
            raise BackendTimeout("iRODS server did not answer in time") from exc
        except OSError as exc:
            raise BackendUnavailable("iRODS server unreachable") from exc

    def close(self) -> None:
        with self._lock:
            sessions = [s for s, _ in self._sessions.values()]
            self._sessions.clear()
        for session in sessions:
            session.cleanup()


def create(options: Mapping[str, Any]) -> IrodsAdapter:
    known = set(inspect.signature(IrodsAdapter).parameters)  # the documented options
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown iRODS mount options: {sorted(unknown)}")
    for required in ("host", "zone", "root"):
        if not options.get(required):
            raise ValueError(f"iRODS mount option {required!r} is required")
    return IrodsAdapter(**dict(options))
