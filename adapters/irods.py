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
import logging
import mimetypes
import threading
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

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
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    Storage,
    StorageError,
    parent_of,
)

log = logging.getLogger(__name__)

TMP_PREFIX = ".fedgate-tmp-"
CHUNK = 1024 * 1024
INSTALL_HINT = "the iRODS adapter needs python-irodsclient: pip install 'fedgate[irods]'"


def _irods() -> Any:
    try:
        import irods.exception
        import irods.models
        import irods.session
        import irods.ticket
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise NotSupported(INSTALL_HINT) from exc
    return irods


def _mime(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


_AUTH = (
    "CAT_INVALID_AUTHENTICATION",
    "CAT_INVALID_USER",
    "CAT_PASSWORD_EXPIRED",
    "PAM_AUTH_ERR",
    "PAM_AUTH_PASSWORD_FAILED",
    "NonAnonymousLoginWithoutPassword",
)
_DENIED = (
    "CAT_NO_ACCESS_PERMISSION",
    "SYS_NO_API_PRIV",
    "CAT_INSUFFICIENT_PRIVILEGE_LEVEL",
    "CAT_TICKET_INVALID",
    "CAT_TICKET_EXPIRED",
    "CAT_TICKET_USES_EXCEEDED",
)
_MISSING = (
    "USER_FILE_DOES_NOT_EXIST",
    "CAT_NO_ROWS_FOUND",
    "CAT_UNKNOWN_COLLECTION",
    "CAT_UNKNOWN_FILE",
    "DoesNotExist",
    "OBJ_PATH_DOES_NOT_EXIST",
    "NoResultFound",
)
_EXISTS = (
    "CAT_NAME_EXISTS_AS_COLLECTION",
    "CAT_NAME_EXISTS_AS_DATAOBJ",
    "CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME",
    "OVERWRITE_WITHOUT_FORCE_FLAG",
)


def _is(exc: BaseException, names: tuple[str, ...]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def translate(exc: BaseException, path: str) -> StorageError:
    """Map a python-irodsclient / socket error to the adapter error tree (no secrets:
    only the mount-relative path and the iRODS error name go into messages)."""
    shown = path or "/"
    if isinstance(exc, StorageError):
        return exc
    if _is(exc, _AUTH):
        return AuthenticationFailed("iRODS rejected the credential")
    if _is(exc, _DENIED):
        return PermissionDenied(f"{shown}: permission denied")
    if _is(exc, _MISSING):
        return NotFound(f"{shown}: no such file or directory")
    if _is(exc, _EXISTS):
        return AlreadyExists(f"{shown}: already exists")
    if _is(exc, ("SYS_NOT_SUPPORTED",)):
        return NotSupported(f"{shown}: operation not supported by the iRODS server")
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return BackendTimeout("iRODS server did not answer in time")
    if _is(exc, ("NetworkException",)) or isinstance(exc, OSError):
        return BackendUnavailable("iRODS server unreachable")
    return StorageError(f"{shown}: iRODS error {type(exc).__name__}")


class _Reader:
    """Iterator over an open data object; closes it (and frees the pooled connection)
    when exhausted, closed, or garbage-collected without being consumed."""

    def __init__(self, fh: Any, path: str, start: int, end: int | None) -> None:
        self._fh: Any = fh
        self._path = path
        self._remaining = None if end is None else max(0, end - start)
        self._start = start

    def __iter__(self) -> _Reader:
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


class IrodsWriter:
    def __init__(self, storage: IrodsStorage, path: str, full: str, tmp: str, fh: Any) -> None:
        self._storage = storage
        self._path = path
        self._full = full
        self._tmp = tmp
        self._fh: Any = fh
        self._done = False

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except Exception as exc:
            raise translate(exc, self._path) from exc

    def commit(self) -> Entry:
        st = self._storage
        try:
            fh, self._fh = self._fh, None
            fh.close()
            if st._is_coll(self._full):
                raise IsADirectory(f"{self._path}: is a directory")
            if st._is_obj(self._full):
                self._replace()
            else:
                try:
                    st._rename(self._tmp, self._full, self._path)
                except AlreadyExists:
                    # Appeared meanwhile, or exists but this user cannot see it.
                    if not st._is_obj(self._full):
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
        st = self._storage
        backup = f"{parent_of(self._full)}/{TMP_PREFIX}old-{uuid.uuid4().hex}"
        st._rename(self._full, backup, self._path)
        try:
            st._rename(self._tmp, self._full, self._path)
        except BaseException:
            try:
                st._rename(backup, self._full, self._path)
            except Exception:
                log.error("iRODS: could not restore %s after a failed replace", self._path)
            raise
        try:
            st.session.data_objects.unlink(backup, force=True)
        except Exception:
            log.warning("iRODS: could not remove the replaced copy of %s", self._path)

    def abort(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except Exception:
                log.debug("closing an aborted iRODS upload failed", exc_info=True)
        if self._done or self._tmp == "":
            return
        tmp, self._tmp = self._tmp, ""
        try:
            self._storage.session.data_objects.unlink(tmp, force=True)
        except Exception as exc:
            if not isinstance(translate(exc, ""), NotFound):
                log.warning("iRODS: could not remove an aborted upload for %s", self._path)


class IrodsStorage:
    capabilities = Capabilities(
        native_checksums=frozenset({"sha256"}),
        native_delegation=True,
    )

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
            if isinstance(err, NotFound) and self._is_coll(full):
                raise IsADirectory(f"{path}: is a directory") from exc
            raise err from exc
        return _Reader(fh, path, start, end)

    def open_write(self, path: str, size_hint: int | None = None) -> IrodsWriter:
        if not path:
            raise IsADirectory("/: is a directory")
        full = self._full(path)
        parent_full = full.rsplit("/", 1)[0]
        if not self._is_coll(parent_full):
            raise ParentNotFound(f"{parent_of(path) or '/'}: parent directory does not exist")
        if self._is_coll(full):
            raise IsADirectory(f"{path}: is a directory")
        tmp = f"{parent_full}/{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fh = self.session.data_objects.open(tmp, "w")
        except Exception as exc:
            raise translate(exc, path) from exc
        return IrodsWriter(self, path, full, tmp, fh)

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
        if algorithm == "adler32":
            value = 1
            for chunk in self.open_read(path):
                value = zlib.adler32(chunk, value)
            return f"{value & 0xFFFFFFFF:08x}"
        try:
            digest = hashlib.new(algorithm)
        except ValueError as exc:
            raise NotSupported(f"checksum {algorithm!r} is not supported") from exc
        for chunk in self.open_read(path):
            digest.update(chunk)
        return digest.hexdigest()

    # --- tickets ------------------------------------------------------------------------

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        method = method.upper()
        if method in ("GET", "HEAD"):
            self.stat(path)
            return self.issue_ticket(path, "read", expires_at, method=method)
        if method == "PUT":
            full = self._full(path)
            if self._is_coll(full):
                raise IsADirectory(f"{path or '/'}: is a directory")
            if not self._is_obj(full):
                if not self._is_coll(full.rsplit("/", 1)[0]):
                    raise ParentNotFound(f"{parent_of(path) or '/'}: parent does not exist")
                try:
                    self.session.data_objects.open(full, "w").close()
                except Exception as exc:
                    raise translate(exc, path) from exc
            return self.issue_ticket(path, "write", expires_at, method=method)
        raise NotSupported(f"no iRODS ticket for method {method}")

    def issue_ticket(
        self,
        path: str,
        mode: str,
        expires_at: dt.datetime,
        uses: int | None = None,
        method: str | None = None,
    ) -> Delegation:
        """Mint an iRODS ticket ("read" or "write") on ``path`` that expires at
        ``expires_at`` (rounded down to the second) and, if ``uses`` is given, can be
        used that many times."""
        if mode not in ("read", "write"):
            raise ValueError("mode must be 'read' or 'write'")
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        expiry = int(expires_at.timestamp())
        if expiry <= time.time():
            raise ValueError("expires_at is in the past")
        full = self._full(path)
        ticket = _irods().ticket.Ticket(self.session)
        try:
            ticket.issue(mode, full)
        except Exception as exc:
            raise translate(exc, path) from exc
        try:
            ticket.modify("expire", expiry)
            if uses is not None:
                ticket.modify("uses", int(uses))
        except Exception as exc:
            try:
                ticket.delete()
            except Exception:
                log.warning("iRODS: could not delete a half-configured ticket on %s", path)
            raise translate(exc, path) from exc
        a = self.adapter
        return Delegation(
            kind="irods_ticket",
            value=ticket.string,
            expires_at=dt.datetime.fromtimestamp(expiry, dt.UTC),
            method=method or ("GET" if mode == "read" else "PUT"),
            headers={
                "X-iRODS-Host": a.host,
                "X-iRODS-Port": str(a.port),
                "X-iRODS-Zone": a.zone,
                "X-iRODS-Path": full,
            },
        )

    def revoke_ticket(self, ticket: str) -> None:
        try:
            _irods().ticket.Ticket(self.session, ticket).delete()
        except Exception as exc:
            err = translate(exc, "")
            if _is(exc, ("CAT_TICKET_INVALID",)):
                err = NotFound("no such ticket")
            raise err from exc

    def close(self) -> None:
        """Sessions are pooled by the adapter; a view has nothing of its own."""


def _ts(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


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

    def _new_session(self, user: str, password: str) -> Any:
        irods = _irods()
        kwargs: dict[str, Any] = dict(
            host=self.host,
            port=self.port,
            zone=self.zone,
            user=user,
            password=password,
            connection_timeout=self.timeout,
        )
        if self.auth_scheme == "pam":
            kwargs["authentication_scheme"] = "pam_password"
        if self.ssl_ca_file:
            kwargs.update(
                client_server_negotiation="request_server_negotiation",
                client_server_policy="CS_NEG_REQUIRE",
                ssl_ca_certificate_file=self.ssl_ca_file,
                encryption_algorithm="AES-256-CBC",
                encryption_key_size=32,
                encryption_num_hash_rounds=16,
                encryption_salt_size=8,
            )
        session = irods.session.iRODSSession(**kwargs)
        if self.default_resource:
            session.default_resource = self.default_resource
        return session

    def _session(self, user: str, password: str) -> Any:
        key = self._key(user, password)
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            session = self._sessions.get(key, (None, 0.0))[0]
            if session is None:
                session = self._new_session(user, password)
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
    known = {
        "host",
        "port",
        "zone",
        "root",
        "auth_scheme",
        "user",
        "password",
        "timeout",
        "page_size",
        "idle_timeout",
        "ssl_ca_file",
        "default_resource",
    }
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown iRODS mount options: {sorted(unknown)}")
    for required in ("host", "zone", "root"):
        if not options.get(required):
            raise ValueError(f"iRODS mount option {required!r} is required")
    return IrodsAdapter(**dict(options))
