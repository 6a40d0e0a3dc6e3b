"""Atomic uploads for gfal mounts.

:class:`GfalWriter` (the normal way): stream into ``.fedgate-upload-<uuid>`` next to the
target, check the stored size on commit, rename over the target. Abort unlinks the
temporary.

:class:`SpoolWriter` (fallback, http only): XrdHttp up to at least 5.5 uses a WebDAV
``MOVE``'s ``Destination`` header without percent-decoding it, and davix cannot send the
raw name, so a rename onto ``with space`` would create ``with%20space`` — possibly over a
user's file of that literal name. :func:`move_decodes_destination` probes this once per
view with hidden names; when the SE does take ``Destination`` literally, uploads whose path
needs escaping are spooled to a local temporary file and PUT to the target on commit.
Nothing is sent before commit and abort sends nothing, but the PUT itself is not atomic on
such an SE (a failure during it can leave a partial target).

Exclusive (create-only) uploads: neither root:// (``kXR_mv``) nor XrdHttp's ``MOVE`` (it
ignores ``Overwrite: F``, checked on XRootD 5.5) can rename without replacing, so the
commit looks for the target immediately before the rename and answers AlreadyExists if
something is there. What remains is the window of one round trip between that look and
the rename (docs/decisions.md); the file that appeared earlier in the upload is kept.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import stat as stat_mod
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any, Protocol
from urllib.parse import quote

from adapters.base import AlreadyExists, Entry, IsADirectory, StorageError, join, parent_of
from adapters.gfal.context import ContextPool, Lease
from adapters.gfal.errors import code_of
from adapters.gfal.http import HttpData
from adapters.streamed_body import Feed, check_sender, in_thread

UPLOAD_PREFIX = ".fedgate-upload-"
CHUNK = 1024 * 1024
_SWEEP_DELAYS = (0.05, 0.1, 0.2, 0.4)  # seconds, after a cut streamed PUT
_BEHIND = 2  # chunks queued for the writer thread: memory per upload ~3 chunks


class UploadTarget(Protocol):
    """What an upload needs of the mount view it writes to (a GfalStorage)."""

    @property
    def pool(self) -> ContextPool: ...

    @property
    def gerror(self) -> type[Exception]:
        """gfal2's ``GError``: what every context call raises."""
        ...

    def url(self, path: str) -> str:
        """The URL gfal2 is given for ``path`` (with the token CGI over root://)."""
        ...

    def error(self, exc: Any, path: str) -> StorageError:
        """A ``GError`` as the error tree, the view's secrets hidden."""
        ...

    def stat(self, path: str) -> Entry: ...


def needs_escaping(path: str) -> bool:
    return any(quote(seg, safe="") != seg for seg in path.split("/"))


def move_decodes_destination(storage: UploadTarget, ctx: Any, folder: str) -> bool:
    """Rename a hidden probe file onto a name with a space and see where it lands."""
    probe = join(folder, f"{UPLOAD_PREFIX}probe-{uuid.uuid4().hex}")
    spaced, literal = probe + " x", probe + "%20x"
    gerror = storage.gerror
    try:
        handle = ctx.open(storage.url(probe), "w")
        handle.write(b"p")
        del handle
        ctx.rename(storage.url(probe), storage.url(spaced))
        try:
            ctx.stat(storage.url(spaced))
            return True
        except gerror:
            return False
    except gerror:
        return False  # unknown: the spooled path is correct on every SE
    finally:
        for leftover in (probe, spaced, literal):
            with contextlib.suppress(gerror):
                ctx.unlink(storage.url(leftover))


class GfalWriter:
    """Writes go to the SE from one background thread, up to ``_BEHIND`` chunks behind the
    caller: the gateway's ``write`` returns as soon as a chunk is queued and goes back to
    receiving the body while gfal2 (which releases the GIL) sends the previous one.
    Without that overlap an upload alternates between the client and the SE and each side
    idles half the time. A write error is raised by the next ``write`` or by ``commit``."""

    # Each gfal2 write call has a fixed cost (most over http://): 1 MiB blocks from the
    # gateway, as smaller ones cost write rate (docs/decisions.md).
    block_size = CHUNK

    def __init__(self, storage: UploadTarget, path: str, exclusive: bool = False) -> None:
        self._storage = storage
        self._path = path
        self._exclusive = exclusive
        self._tmp = join(parent_of(path), UPLOAD_PREFIX + uuid.uuid4().hex)
        self._tmp_url = storage.url(self._tmp)
        self._lease = Lease(storage.pool)
        self._written = 0
        self._removed = False  # abort has tried to unlink the temporary
        self._unlinked = False  # ... and it was there
        self._error: StorageError | None = None
        try:
            self._start()
        except BaseException:
            self._lease.release()
            raise

    def _start(self) -> None:
        """Open the temporary file (the transport's part of ``__init__``)."""
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_BEHIND)
        self._thread: threading.Thread | None = None
        try:
            self._file: Any = self._lease.ctx.open(self._tmp_url, "w")
        except self._storage.gerror as exc:
            raise self._storage.error(exc, self._path) from None

    def _run(self) -> None:
        gerror = self._storage.gerror
        while (data := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so that a blocked ``write`` cannot hang
            try:
                self._file.write(data)
            except gerror as exc:
                self._error = self._storage.error(exc, self._path)
            except Exception as exc:  # handed to the caller's thread, like the above
                self._error = StorageError(f"{self._path}: write failed ({type(exc).__name__})")

    def write(self, data: bytes) -> None:
        if not data:
            return  # gfal2 rejects zero-length writes
        if self._file is None:
            raise StorageError(f"{self._path}: upload already finished")
        if self._error is not None:
            self._fail()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="gfal-write", daemon=True)
            self._thread.start()
        self._queue.put(data)
        self._written += len(data)

    def _drain(self) -> None:
        """Wait until every queued chunk is written (or dropped after an error)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _fail(self) -> None:
        error = self._error
        assert error is not None
        self.abort()
        raise error from None

    def _close(self) -> None:
        self._drain()
        # gfal2's file object closes (and over http sends the PUT) when it is freed.
        self._file = None

    def commit(self) -> Entry:
        s = self._storage
        ctx = self._lease.ctx
        done = False
        try:
            self._drain()
            if self._error is not None:
                self._fail()
            self._close()
            try:
                size = int(ctx.stat(self._tmp_url).st_size)
                if size != self._written:
                    raise StorageError(
                        f"{self._path}: upload incomplete ({size} of {self._written} bytes stored)"
                    )
                target = s.url(self._path)
                try:
                    if stat_mod.S_ISDIR(ctx.stat(target).st_mode):
                        raise IsADirectory(f"{self._path}: is a directory")
                    if self._exclusive:
                        raise AlreadyExists(f"{self._path}: already exists")
                except s.gerror as exc:
                    if code_of(exc) != errno.ENOENT:
                        raise
                ctx.rename(self._tmp_url, target)
            except s.gerror as exc:
                raise s.error(exc, self._path) from None
            done = True
        finally:
            if not done:
                self.abort()
        self._lease.release()
        return s.stat(self._path)

    def abort(self) -> None:
        self._close()
        if not self._removed:
            self._removed = True
            self._unlinked = self._unlink_temporary(self._lease.ctx)
        self._lease.release()

    def _unlink_temporary(self, ctx: Any) -> bool:
        """Remove the temporary; False if it was not there (renamed already, never
        created) or the SE is gone: nothing more to do then."""
        try:
            ctx.unlink(self._tmp_url)
        except self._storage.gerror:
            return False
        return True


class StreamedPutWriter(GfalWriter):
    """http/dav mounts, size known: the body streams to the SE in one PUT of the temporary
    name while the client sends it (http.py says why not gfal2's write);
    commit and abort are GfalWriter's (size check, rename, unlink through gfal2)."""

    def __init__(
        self,
        storage: UploadTarget,
        http: HttpData,
        path: str,
        size: int,
        exclusive: bool = False,
    ) -> None:
        self._size = size
        self._http = http
        super().__init__(storage, path, exclusive)

    def _start(self) -> None:
        http = self._http
        self._feed = Feed()
        body = self._feed.chunk(self._size)
        self._sender: Future[None] | None = in_thread(lambda: http.put(self._tmp, body), "gfal-put")

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._sender is None:
            raise StorageError(f"{self._path}: upload already finished")
        if self._written + len(data) > self._size:
            self._error = StorageError(f"{self._path}: more bytes than the announced size")
            self._fail()
        self._feed.put(data, self._alive)
        self._written += len(data)

    def _alive(self) -> None:
        check_sender(self._sender, f"{self._path}: the storage element ended the upload early")

    def _drain(self) -> None:
        sender = self._sender
        if sender is None or self._error is not None:
            return
        if self._written != self._size:
            self._error = StorageError(f"{self._path}: fewer bytes than the announced size")
            return
        try:
            sender.result()
        except StorageError as exc:
            self._error = exc

    def abort(self) -> None:
        cut = self._sender is not None and not self._sender.done()
        super().abort()
        if cut and not self._unlinked:
            self._sweep()

    def _sweep(self) -> None:
        """A PUT cut before the SE created its file can still create it after abort's
        unlink: XRootD creates the file when it reads the headers, which may come after
        our unlink. Look again for a moment (seen in the tests: a temporary left behind
        by an upload refused in its first write). A file that abort did remove does not
        come back: the SE had opened it already, and opens it once per request."""
        with self._storage.pool.lease() as ctx:
            for delay in _SWEEP_DELAYS:
                time.sleep(delay)
                if self._unlink_temporary(ctx):
                    return

    def _close(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            # Cut the PUT off: the SE sees a broken request, and the temporary is
            # unlinked by abort.
            self._feed.cancel()
            with contextlib.suppress(BaseException):
                sender.result()


class SpoolWriter:
    def __init__(self, storage: UploadTarget, path: str, exclusive: bool = False) -> None:
        self._storage = storage
        self._path = path
        self._exclusive = exclusive
        self._spool: Any = tempfile.TemporaryFile(prefix="fedgate-gfal-")  # noqa: SIM115
        self._written = 0

    def write(self, data: bytes) -> None:
        if self._spool is None:
            raise StorageError(f"{self._path}: upload already finished")
        self._spool.write(data)
        self._written += len(data)

    def commit(self) -> Entry:
        s = self._storage
        if self._spool is None:
            raise StorageError(f"{self._path}: upload already finished")
        spool, self._spool = self._spool, None
        with spool, s.pool.lease() as ctx:
            target = s.url(self._path)
            backup: str | None = None
            try:
                try:
                    if stat_mod.S_ISDIR(ctx.stat(target).st_mode):
                        raise IsADirectory(f"{self._path}: is a directory")
                    if self._exclusive:
                        raise AlreadyExists(f"{self._path}: already exists")
                    # davix cannot open an existing file for writing: set the old one
                    # aside under a hidden name (a MOVE *from* the awkward name is fine).
                    backup = s.url(join(parent_of(self._path), UPLOAD_PREFIX + uuid.uuid4().hex))
                    ctx.rename(target, backup)
                except s.gerror as exc:
                    if code_of(exc) != errno.ENOENT:
                        raise
                spool.seek(0)
                _upload(ctx, spool, target)
                size = int(ctx.stat(target).st_size)
                if size != self._written:
                    raise StorageError(
                        f"{self._path}: upload incomplete ({size} of {self._written} bytes stored)"
                    )
            except BaseException as exc:
                _restore(s.gerror, ctx, target, backup)
                if isinstance(exc, s.gerror):
                    raise s.error(exc, self._path) from None
                raise
            if backup is not None:
                with contextlib.suppress(s.gerror):
                    ctx.unlink(backup)
        return s.stat(self._path)

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


def _upload(ctx: Any, source: Any, url: str) -> None:
    handle = ctx.open(url, "w")
    while data := source.read(CHUNK):
        handle.write(data)
    del handle  # closing sends the PUT


def _restore(gerror: type[Exception], ctx: Any, target: str, backup: str | None) -> None:
    """After a failed spooled commit: drop the partial target, put the old file back by
    streaming it (a MOVE onto the awkward name is what cannot work). If even that fails the
    old content stays under its hidden name rather than being deleted."""
    with contextlib.suppress(gerror):
        ctx.unlink(target)
    if backup is None:
        return
    with contextlib.suppress(gerror):
        _upload(ctx, _GfalReader(ctx.open(backup, "r")), target)
        if ctx.stat(target).st_size == ctx.stat(backup).st_size:
            ctx.unlink(backup)


class _GfalReader:
    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def read(self, n: int) -> bytes:
        return bytes(self._handle.read_bytes(n))
