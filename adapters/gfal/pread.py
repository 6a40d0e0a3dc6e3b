"""root:// reads straight into fresh buffers, through libgfal2's C API (ctypes).

Why not the Python binding for this one loop: its ``pread_bytes`` zero-fills a vector,
reads into it, copies it into a ``std::string`` and copies that into a ``bytes`` (the last
copy with the GIL held): three more passes over every byte than the read itself. Calling
``gfal2_pread`` into an uninitialised ``bytearray`` reads faster at less CPU
(docs/decisions.md has the figures). Everything else
(stat, listings, writes, checksums) keeps the binding; this module only opens, preads and
closes, with contexts of its own (gfal2's xrootd plugin shares XrdCl's connections
process-wide, so this opens no extra connection). A read longer than one chunk keeps two
preads running, each on a handle of its own (docs/decisions.md says what that bought).

If libgfal2 cannot be loaded this way (another soname, a missing symbol), ``library()``
returns None and the adapter reads through the binding as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

from adapters.base import StorageError
from adapters.gfal.context import ContextPool, Lease

log = logging.getLogger("fedgate.adapters.gfal")

IN_FLIGHT = 2  # preads kept running per read (each on a handle of its own)


class RawError(Exception):
    """A failed libgfal2 call: the GError's errno and message, which ``translate`` maps
    like the binding's ``GError`` (the message may hold the URL; it is never raised as is)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", ctypes.c_char_p)]


_ErrorOut = ctypes.POINTER(ctypes.POINTER(_GError))


class LibGfal2:
    """The few libgfal2 entry points the read loop needs, with their C signatures.

    ``ctypes.CDLL`` releases the GIL for the duration of each call, as the binding does."""

    def __init__(self) -> None:
        gfal = ctypes.CDLL("libgfal2.so.2")
        glib = ctypes.CDLL("libglib-2.0.so.0")
        ctx, fd, err = ctypes.c_void_p, ctypes.c_int, _ErrorOut
        self._new = _bind(gfal.gfal2_context_new, ctypes.c_void_p, [err])
        self.free_context = _bind(gfal.gfal2_context_free, None, [ctx])
        self._open = _bind(gfal.gfal2_open, ctypes.c_int, [ctx, ctypes.c_char_p, ctypes.c_int, err])
        self._pread = _bind(
            gfal.gfal2_pread,
            ctypes.c_ssize_t,
            [ctx, fd, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_longlong, err],
        )
        self._close = _bind(gfal.gfal2_close, ctypes.c_int, [ctx, fd, err])
        self._error_free = _bind(glib.g_error_free, None, [ctypes.POINTER(_GError)])
        # A bytearray without the zero-fill bytearray(n) does: the pread overwrites it.
        self._bytearray = _bind(
            ctypes.pythonapi.PyByteArray_FromStringAndSize,
            ctypes.py_object,
            [ctypes.c_void_p, ctypes.c_ssize_t],
        )

    def _raise(self, err: Any, what: str) -> None:
        if not err:
            raise RawError(0, f"{what} failed")
        code, raw = err.contents.code, err.contents.message
        message = raw.decode("utf-8", "replace") if raw else f"{what} failed"
        self._error_free(err)
        raise RawError(code, message)

    def new_context(self) -> int:
        err = ctypes.POINTER(_GError)()
        ptr = self._new(ctypes.byref(err))
        if not ptr:
            self._raise(err, "gfal2_context_new")
        return cast(int, ptr)

    def open(self, ctx: int, url: str) -> int:
        err = ctypes.POINTER(_GError)()
        fd = self._open(ctx, url.encode(), os.O_RDONLY, ctypes.byref(err))
        if fd <= 0:
            self._raise(err, "open")
        return cast(int, fd)

    def pread(self, ctx: int, fd: int, count: int, offset: int) -> bytearray:
        """Up to ``count`` bytes at ``offset`` in a new bytearray (empty at the end)."""
        buf: bytearray = self._bytearray(None, count)
        window = (ctypes.c_char * count).from_buffer(buf)
        err = ctypes.POINTER(_GError)()
        n = self._pread(ctx, fd, window, count, offset, ctypes.byref(err))
        del window  # the buffer export ends here, so a short read can shrink it
        if n < 0:
            self._raise(err, "pread")
        if n < count:
            del buf[n:]
        return buf

    def close(self, ctx: int, fd: int) -> None:
        err = ctypes.POINTER(_GError)()
        if self._close(ctx, fd, ctypes.byref(err)) < 0 and err:
            self._error_free(err)  # a read-only handle: nothing to lose at close


def _bind(fn: Any, restype: Any, argtypes: list[Any]) -> Any:
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_library: LibGfal2 | None = None
_tried = False
_lock = threading.Lock()


def library() -> LibGfal2 | None:
    """libgfal2 through ctypes, loaded once per process; None if it cannot be."""
    global _library, _tried
    with _lock:
        if not _tried:
            _tried = True
            try:
                _library = LibGfal2()
            except (OSError, AttributeError) as exc:
                log.warning("root:// reads go through gfal2's Python binding: %s", exc)
        return _library


class RawContext:
    """One gfal2 context, freed when the object goes (as the binding's are)."""

    def __init__(self, lib: LibGfal2) -> None:
        self.lib = lib
        self.ptr = lib.new_context()

    def __del__(self) -> None:
        ptr, self.ptr = getattr(self, "ptr", 0), 0
        if ptr:
            # At interpreter exit ctypes may already be half torn down: nothing to save.
            with contextlib.suppress(Exception):
                self.lib.free_context(ptr)


class RawReader:
    """Ranged reads of one mount, in ``chunk``-sized fresh buffers."""

    def __init__(
        self,
        lib: LibGfal2,
        translate: Callable[[Exception, str], StorageError],
        chunk: int,
        max_idle: int,
    ) -> None:
        self.lib = lib
        self._translate = translate
        self.chunk = chunk
        self.pool = ContextPool(lambda: RawContext(lib), max_idle)

    def open(self, url: str, path: str, start: int, stop: int) -> Iterator[bytes]:
        """Opens now, so a refused open fails before any byte is promised; the returned
        iterator closes the file and gives the context back when it ends or is closed.

        A read of more than one chunk opens the file twice and keeps a pread in flight
        on each handle (two on one handle run one after the other)."""
        lease = Lease(self.pool)
        fds: list[int] = []
        try:
            for _ in range(IN_FLIGHT if stop - start > self.chunk else 1):
                fds.append(self.lib.open(lease.ctx.ptr, url))
        except BaseException as exc:
            for fd in fds:
                self.lib.close(lease.ctx.ptr, fd)
            lease.release()
            if isinstance(exc, RawError):
                raise self._translate(exc, path) from None
            raise
        return self._chunks(lease, fds, path, start, stop)

    def _chunks(
        self, lease: Lease, fds: list[int], path: str, start: int, stop: int
    ) -> Iterator[bytes]:
        ctx = lease.ctx.ptr
        workers = ThreadPoolExecutor(len(fds), thread_name_prefix="fedgate-pread")
        pending: deque[tuple[int, Future[bytearray]]] = deque()
        handles = itertools.cycle(fds)  # the next pread goes to the handle freed first
        offset = start
        try:
            while offset < stop or pending:
                while offset < stop and len(pending) < len(fds):
                    want = min(self.chunk, stop - offset)
                    fd = next(handles)
                    pending.append((want, workers.submit(self.lib.pread, ctx, fd, want, offset)))
                    offset += want
                want, future = pending.popleft()
                try:
                    data = future.result()
                except RawError as exc:
                    raise self._translate(exc, path) from None
                if data:
                    # A bytearray, typed as the bytes its consumers take it as: the
                    # socket send, hashing and gzip read any buffer, and the ASGI body
                    # path passes it as a memoryview (gateway/transfer.py counted). A
                    # bytes() copy would put back a pass this module removes.
                    yield cast(bytes, data)
                if len(data) < want:
                    return  # truncated since the stat: nothing after this is the file's
        finally:
            # The handles are closed only once no pread is left on them.
            workers.shutdown(wait=True, cancel_futures=True)
            for fd in fds:
                self.lib.close(ctx, fd)
            lease.release()

    def close(self) -> None:
        self.pool.close()
