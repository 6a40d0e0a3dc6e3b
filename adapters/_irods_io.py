"""Error mapping, read stream and atomic writer of the iRODS adapter (see adapters/irods.py)."""

from __future__ import annotations

import datetime as dt
import logging
import mimetypes
import uuid
from typing import TYPE_CHECKING, Any

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    Entry,
    IsADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
    StorageError,
    parent_of,
)
from adapters.irods_pipeline import PipelinedWrites

if TYPE_CHECKING:
    from adapters.irods import IrodsAdapter, IrodsStorage

WRITE_BLOCK = 1024 * 1024  # bytes per iRODS write call

log = logging.getLogger("adapters.irods")

TMP_PREFIX = ".fedgate-tmp-"
# Read size: each read is one request/answer with the server, and every chunk costs the
# gateway a thread hop and a socket write. 4 MiB instead of 1 MiB cut fedgate's CPU per
# GiB read by a third and doubled its rate on the protocol test server (bench/irods.py),
# for 4 MiB held per download. Writes stay as the caller hands them (1 MiB from the
# gateway): python-irodsclient writes 4 MiB blocks much slower than 1 MiB ones.
CHUNK = 4 * 1024 * 1024
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
    # Every iRODS write is a round trip: the gateway hands over 1 MiB at a time (512 KiB
    # blocks cost ~25 % of the write rate on the protocol test server).
    block_size = WRITE_BLOCK

    def __init__(
        self,
        storage: IrodsStorage,
        path: str,
        full: str,
        tmp: str,
        fh: Any,
        exclusive: bool = False,
    ) -> None:
        self._storage = storage
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
        st = self._storage
        try:
            self._flush()
            if self._pipeline is not None:
                self._pipeline.drain()
            fh, self._fh = self._fh, None
            fh.close()
            if st._is_coll(self._full):
                raise IsADirectory(f"{self._path}: is a directory")
            if self._exclusive:
                try:
                    st._rename(self._tmp, self._full, self._path)
                except NotFound as exc:
                    raise ParentNotFound(f"{self._path}: parent directory vanished") from exc
            elif st._is_obj(self._full):
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
            self._storage.session.data_objects.unlink(tmp, force=True)
        except Exception as exc:
            if not isinstance(translate(exc, ""), NotFound):
                log.warning("iRODS: could not remove an aborted upload for %s", self._path)


def _ts(value: Any) -> float | None:
    if isinstance(value, dt.datetime):
        return value.timestamp()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def new_session(self: IrodsAdapter, user: str, password: str) -> Any:
    """A python-irodsclient session for one user of the mount (connects lazily)."""
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
