"""One credential's view of a gfal mount: the Storage protocol over gfal2's namespace calls,
with the bytes over urllib3 (http.py) or libgfal2's C pread (pread.py) where those are
faster (adapters/gfal/__init__.py says what a mount does)."""

from __future__ import annotations

import contextlib
import datetime as dt
import stat as stat_mod
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from adapters.base import (
    AlreadyExists,
    Capabilities,
    Delegation,
    Entry,
    IsADirectory,
    NotADirectory,
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
from adapters.gfal.context import ContextPool, Lease, gfal2_module
from adapters.gfal.errors import is_ambiguous, translate
from adapters.gfal.http import HttpData
from adapters.gfal.options import GfalSettings
from adapters.gfal.pread import RawReader, library
from adapters.gfal.presign import request_macaroon
from adapters.gfal.urls import (
    HTTP_SCHEMES,
    TLS_SCHEMES,
    XROOTD_SCHEMES,
    normalise_base_url,
    path_url,
    with_authz,
)
from adapters.gfal.write import (
    UPLOAD_PREFIX,
    GfalWriter,
    SpoolWriter,
    StreamedPutWriter,
    move_decodes_destination,
    needs_escaping,
)

# Bytes per pread, each a round trip: through the binding one at a time, through the C
# API two at once, where half the size ran as fast at half the memory (docs/decisions.md).
PREAD_CHUNK = 4 * 1024 * 1024
RAW_PREAD_CHUNK = 2 * 1024 * 1024


def _entry(path: str, st: Any) -> Entry:
    # XRootD's dirlist reports permission bits only (no S_IFREG) for files: test S_ISDIR.
    is_dir = stat_mod.S_ISDIR(st.st_mode)
    return Entry(
        path=path,
        is_dir=is_dir,
        size=None if is_dir else int(st.st_size),
        mtime=float(st.st_mtime) if st.st_mtime else None,
        mime_type=None if is_dir else mime_type(path),
    )


class GfalStorage:
    def __init__(self, options: GfalSettings, token: str | None) -> None:
        self.options = options
        self.base, self.scheme = normalise_base_url(options.base_url)
        self.gfal = gfal2_module(options.connect_timeout, options.timeout)
        self.gerror: type[Exception] = self.gfal.GError
        self._token = token
        self.secrets = (token,) if token else ()
        self._xrootd = self.scheme in XROOTD_SCHEMES
        self.pool = ContextPool(self._new_context, options.max_idle_contexts)
        # The bytes of http/dav mounts go over urllib3 (http.py says why).
        self.http = (
            HttpData(self.base, self.scheme, token, options)
            if self.scheme in HTTP_SCHEMES and options.stream_http and not options.x509_proxy
            else None
        )
        # The binding's pread copies every byte three times; see pread.py.
        lib = library() if self._xrootd and options.raw_reads and not options.x509_proxy else None
        self.raw = (
            RawReader(lib, self.error, RAW_PREAD_CHUNK, options.max_idle_contexts) if lib else None
        )
        # Whether the SE percent-decodes a MOVE's Destination (see write.py), and whether
        # it takes a PUT without a redirect (see http.py); each probed once.
        self._move_decodes: bool | None = None
        self._puts_directly: bool | None = None
        self._probe_lock = threading.Lock()
        can_presign = options.macaroons and self.scheme in TLS_SCHEMES
        self.capabilities = Capabilities(
            native_checksums=frozenset(options.native_checksums),
            presign_read=can_presign,
            presign_write=can_presign,
            native_delegation=can_presign,
            # A macaroon goes in an Authorization header: no redirect can carry it.
            presign_needs_headers=True,
            # pread is one request per chunk: the next one runs while the gateway sends.
            read_ahead=0 if self.http is not None else 1,
        )

    def __repr__(self) -> str:
        return f"GfalStorage({self.base!r})"

    def _new_context(self) -> Any:
        o = self.options
        ctx = self.gfal.creat_context()
        ctx.set_opt_boolean("HTTP PLUGIN", "RETRIEVE_BEARER_TOKEN", False)
        ctx.set_opt_integer("CORE", "NAMESPACE_TIMEOUT", o.timeout)
        ctx.set_opt_integer("CORE", "CHECKSUM_TIMEOUT", o.checksum_timeout)
        ctx.set_opt_integer("HTTP PLUGIN", "OPERATION_TIMEOUT", o.timeout)
        ctx.set_opt_boolean("HTTP PLUGIN", "INSECURE", o.insecure)
        if self._token and not self._xrootd:
            ctx.cred_set(self.base, ctx.cred_new("BEARER", self._token))
        if o.x509_proxy:
            ctx.cred_set(self.base, ctx.cred_new("X509_CERT", o.x509_proxy))
            ctx.cred_set(self.base, ctx.cred_new("X509_KEY", o.x509_proxy))
        return ctx

    # --- helpers ----------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The URL gfal2 is given (with the token CGI over root://). Never log it."""
        url = path_url(self.base, path)
        return with_authz(url, self._token) if self._xrootd else url

    def public_url(self, path: str) -> str:
        """The SE URL of ``path`` without any credential, e.g. to go with a macaroon."""
        self._check_visible(path)
        return path_url(self.base, path)

    def error(self, exc: Any, path: str) -> StorageError:
        return translate(exc, path, self.secrets)

    @staticmethod
    def _check_visible(path: str) -> None:
        if any(seg.startswith(UPLOAD_PREFIX) for seg in path.split("/")):
            raise NotFound(f"{path}: no such file or directory")

    def _stat(self, ctx: Any, path: str) -> Entry:
        try:
            return _entry(path, ctx.stat(self.url(path)))
        except self.gerror as exc:
            if path and is_ambiguous(exc) and not self._parent_is_dir(ctx, path):
                raise NotFound(f"{path}: no such file or directory") from None
            raise self.error(exc, path) from None

    def _parent_is_dir(self, ctx: Any, path: str) -> bool:
        try:
            return stat_mod.S_ISDIR(ctx.stat(self.url(parent_of(path))).st_mode)
        except self.gerror:
            return False

    def _require_parent(self, ctx: Any, path: str) -> None:
        parent = parent_of(path)
        try:
            entry = self._stat(ctx, parent)
        except NotFound:
            raise ParentNotFound(f"{parent or '/'}: parent directory does not exist") from None
        if not entry.is_dir:
            raise ParentNotFound(f"{parent}: is not a directory")

    def _exists(self, ctx: Any, path: str) -> Entry | None:
        try:
            return self._stat(ctx, path)
        except NotFound:
            return None

    # --- Storage ----------------------------------------------------------------------

    def stat(self, path: str) -> Entry:
        self._check_visible(path)
        with self.pool.lease() as ctx:
            return self._stat(ctx, path)

    def list(self, path: str) -> Iterator[Entry]:
        self._check_visible(path)
        return self._list(path, hide_uploads=True)

    def _list(self, path: str, hide_uploads: bool) -> Iterator[Entry]:
        lease = Lease(self.pool)
        with self._opening(lease, path):
            # Stat first: opendir on a file fails with a different code per protocol.
            if not self._stat(lease.ctx, path).is_dir:
                raise NotADirectory(f"{path}: not a directory")
            handle = lease.ctx.opendir(self.url(path))
        return self._iter_dir(lease, handle, path, hide_uploads)

    @contextlib.contextmanager
    def _opening(self, lease: Lease, path: str) -> Iterator[None]:
        """Until a stream takes the lease over, a failure gives it back (a gfal2 error
        translated)."""
        try:
            yield
        except self.gerror as exc:
            lease.release()
            raise self.error(exc, path) from None
        except BaseException:
            lease.release()
            raise

    def _iter_dir(self, lease: Lease, handle: Any, path: str, hide: bool) -> Iterator[Entry]:
        try:
            while True:
                try:
                    dirent, st = handle.readpp()
                except self.gerror as exc:
                    raise self.error(exc, path) from None
                if dirent is None:
                    return
                name = dirent.d_name
                if name in (".", "..") or (hide and name.startswith(UPLOAD_PREFIX)):
                    continue
                yield _entry(join(path, name), st)
        finally:
            del handle
            lease.release()

    def open_read(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        self._check_visible(path)
        lease = Lease(self.pool)
        with self._opening(lease, path):
            entry = self._stat(lease.ctx, path)
            if entry.is_dir:
                raise IsADirectory(f"{path}: is a directory")
            if self.http is None and self.raw is None:
                handle = lease.ctx.open(self.url(path), "r")
        size = entry.size or 0
        stop = size if end is None else min(end, size)
        if self.http is not None:
            lease.release()
            return self.http.read(path, start, stop)
        if self.raw is not None:
            lease.release()
            return self.raw.open(self.url(path), path, start, stop)
        return self._read(lease, handle, path, start, stop)

    def _read(self, lease: Lease, handle: Any, path: str, start: int, stop: int) -> Iterator[bytes]:
        try:
            offset = start
            while offset < stop:
                try:
                    data = handle.pread_bytes(offset, min(PREAD_CHUNK, stop - offset))
                except self.gerror as exc:
                    raise self.error(exc, path) from None
                if not data:
                    return  # truncated since the stat
                offset += len(data)
                yield data
        finally:
            del handle
            lease.release()

    def open_write(
        self, path: str, size_hint: int | None = None, *, exclusive: bool = False
    ) -> GfalWriter | SpoolWriter:
        if not path:
            raise IsADirectory("/: is a directory")
        self._check_visible(path)
        with self.pool.lease() as ctx:
            self._require_parent(ctx, path)
            existing = self._exists(ctx, path)
            if existing is not None and existing.is_dir:
                raise IsADirectory(f"{path}: is a directory")
            if existing is not None and exclusive:
                raise AlreadyExists(f"{path}: already exists")
            if self.scheme in HTTP_SCHEMES and needs_escaping(path):
                with self._probe_lock:
                    if self._move_decodes is None:
                        self._move_decodes = move_decodes_destination(self, ctx, parent_of(path))
                if not self._move_decodes:
                    return SpoolWriter(self, path, exclusive)
            if self.http is not None and size_hint and self._takes_direct_puts(ctx, path):
                return StreamedPutWriter(self, self.http, path, size_hint, exclusive)
        return GfalWriter(self, path, exclusive)

    def _takes_direct_puts(self, ctx: Any, path: str) -> bool:
        assert self.http is not None
        with self._probe_lock:
            if self._puts_directly is None:
                probe = join(parent_of(path), f"{UPLOAD_PREFIX}probe-{uuid.uuid4().hex}")
                try:
                    self._puts_directly = self.http.try_put(probe)  # None: ask again
                finally:
                    with contextlib.suppress(self.gerror):
                        ctx.unlink(self.url(probe))
            return bool(self._puts_directly)

    def mkdir(self, path: str) -> Entry:
        if not path:
            raise AlreadyExists("/: already exists")
        self._check_visible(path)
        with self.pool.lease() as ctx:
            # Both plugins create missing parents and XrdHttp accepts MKCOL on an existing
            # collection, so the POSIX answers come from explicit checks.
            self._require_parent(ctx, path)
            if self._exists(ctx, path) is not None:
                raise AlreadyExists(f"{path}: already exists")
            try:
                ctx.mkdir(self.url(path), 0o755)
            except self.gerror as exc:
                raise self.error(exc, path) from None
            return self._stat(ctx, path)

    def delete(self, path: str) -> None:
        if not path:
            raise PermissionDenied("the mount root cannot be deleted")
        self._check_visible(path)
        with self.pool.lease() as ctx:
            if self._stat(ctx, path).is_dir:
                self._remove_tree(ctx, path)
            else:
                self._unlink(ctx, path)

    def _unlink(self, ctx: Any, path: str) -> None:
        try:
            ctx.unlink(self.url(path))
        except self.gerror as exc:
            raise self.error(exc, path) from None

    def _remove_tree(self, ctx: Any, path: str) -> None:
        # gfal2 buffers each listing whole, so removing entries while iterating is safe.
        for entry in self._list(path, hide_uploads=False):
            if entry.is_dir:
                self._remove_tree(ctx, entry.path)
            else:
                self._unlink(ctx, entry.path)
        try:
            ctx.rmdir(self.url(path))
        except self.gerror as exc:
            raise self.error(exc, path) from None

    def checksum(self, path: str, algorithm: str = "md5") -> str:
        algorithm = algorithm.lower()
        entry = self.stat(path)
        if entry.is_dir:
            raise IsADirectory(f"{path}: is a directory")
        if algorithm in self.capabilities.native_checksums:
            with self.pool.lease() as ctx:
                try:
                    value = str(ctx.checksum(self.url(path), algorithm.upper())).strip().lower()
                except self.gerror as exc:
                    raise self.error(exc, path) from None
            return value.zfill(8) if algorithm == "adler32" else value
        return self._streamed_checksum(path, algorithm)

    def _streamed_checksum(self, path: str, algorithm: str) -> str:
        return streamed_checksum(self.open_read(path), algorithm)

    def presign(self, path: str, method: str, expires_at: dt.datetime) -> Delegation:
        self._check_visible(path)
        if not self.capabilities.native_delegation:
            raise NotSupported(
                "this storage element cannot mint a path-scoped token "
                "(root:// has no macaroon request; use an http(s)/dav(s) base_url)"
            )
        url = path_url(self.base, path)
        with self.pool.lease() as ctx:
            return request_macaroon(ctx, url, path, method, expires_at, self.gerror, self.error)

    def close(self) -> None:
        self.pool.close()
        if self.http is not None:
            self.http.close()
        if self.raw is not None:
            self.raw.close()
