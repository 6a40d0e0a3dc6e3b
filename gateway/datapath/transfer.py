"""Moving bytes between an ASGI request/response and a synchronous backend.

Backend libraries are synchronous, so every backend call runs in a thread. Single calls
and listings (one hop per batch of entries) use anyio's worker pool; a file download or
upload runs one thread of its own for the whole transfer, which trades chunks with the
event loop through gateway/datapath/block_pipe.py, so the loop is off the backend's critical path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TypeVar

from anyio import (
    CancelScope,
    to_thread,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from adapters.base import Entry, Writer
from gateway.config import Settings
from gateway.datapath.block_pipe import BlockPipe, ReadAhead, WriterFailed
from gateway.datapath.scope import (
    ABORT_KEY,
    BODY_BLOCK_KEY,
    BODY_LIMITS_KEY,
    RECEIVED_DIRECT_KEY,
    SEND_IDLE_KEY,
    SENT_DIRECT_KEY,
    SINK_KEY,
    SOURCE_KEY,
    SocketSink,
    SocketSource,
    Taken,
)
from gateway.datapath.socket_receive import BodyCut, BodyStalled, run_reader
from gateway.datapath.socket_send import MIN_DIRECT, BodyWriter
from gateway.datapath.socket_thread import ClientGone, reset
from gateway.errors import CarminError, E

log = logging.getLogger("fedgate")
T = TypeVar("T")
# Bytes handed to the writer thread at a time, unless the writer says otherwise with a
# ``block_size`` attribute (see adapters.base.Writer), and blocks queued in between. Per
# upload the gateway holds about (PIPELINE_DEPTH + 2) blocks: the one gathering in the
# server protocol, the queued one(s), the one being written.
UPLOAD_BUFFER = 512 * 1024
PIPELINE_DEPTH = 1
READ_AHEAD = 1  # chunks a download reads ahead of the client
_END = object()


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Pull each item of a blocking iterator in a worker thread."""

    def step() -> object:
        return next(iterator, _END)

    try:
        while True:
            item = await to_thread.run_sync(step)
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        await _close(iterator)


async def read_ahead(iterator: Iterator[bytes], depth: int = READ_AHEAD) -> AsyncIterator[bytes]:
    """Chunks of a blocking backend stream, read by one thread up to ``depth`` chunks
    ahead of the client (gateway/datapath/block_pipe.py)."""
    pump = ReadAhead(depth)
    pump.start(iterator)
    try:
        while (chunk := await pump.get()) is not None:
            yield chunk
    finally:
        pump.stop()
        await pump.wait()  # the iterator is the thread's until it returns
        await _close(iterator)


async def _close(iterator: Iterator[T]) -> None:
    # Shielded: a cancelled response (client gone) must still release the backend stream.
    close = getattr(iterator, "close", None)
    if close is not None:
        with CancelScope(shield=True):
            await to_thread.run_sync(close)


async def batches_in_thread(iterator: Iterator[T], size: int = 500) -> AsyncIterator[list[T]]:
    """Like iterate_in_thread, but one hop per ``size`` items (listings)."""

    def step() -> list[T]:
        out: list[T] = []
        for item in iterator:
            out.append(item)
            if len(out) >= size:
                break
        return out

    try:
        while True:
            batch = await to_thread.run_sync(step)
            if not batch:
                return
            yield batch
    finally:
        await _close(iterator)


async def counted(
    chunks: AsyncIterator[bytes], expected: int | None, done: Callable[[int, bool], None]
) -> AsyncIterator[bytes | memoryview]:
    """Pass chunks through, count them, and report (bytes, complete) when finished.

    If the backend yields more than ``expected`` bytes the stream is broken off rather
    than sending a body that disagrees with its Content-Length. A chunk that is not
    ``bytes`` (gfal2's root:// reads fill bytearrays, adapters/gfal/pread.py) goes on as a
    memoryview: Starlette sends bytes and memoryviews, and would ``.encode()`` anything else."""
    sent = 0
    ok = False
    try:
        async for chunk in chunks:
            sent += len(chunk)
            if expected is not None and sent > expected:
                raise OSError("backend returned more bytes than announced")
            yield chunk if isinstance(chunk, bytes) else memoryview(chunk)
        ok = expected is None or sent == expected
        if not ok:
            raise OSError("backend returned fewer bytes than announced")
    finally:
        # The client may hang up the moment it has every byte (its Content-Length is
        # met), cancelling us before the backend iterator has said it is finished.
        done(sent, ok or (expected is not None and sent == expected))
        await _aclose(chunks)


async def _aclose(iterator: object) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        with CancelScope(shield=True):
            await aclose()


class ClosingStreamingResponse(StreamingResponse):
    """A StreamingResponse whose body iterator is closed the moment the response ends,
    however it ends. Starlette leaves an interrupted iterator (client gone, reader cut
    off) to the garbage collector, which may keep a backend file, connection or stream
    open for minutes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await _aclose(self.body_iterator)


class DownloadResponse(ClosingStreamingResponse):
    """A file body from a backend iterator, of a known length.

    Written to the client's socket by the transfer's own thread when our server protocol
    offers it (gateway/datapath/socket_send.py), through ASGI otherwise: read ahead by one thread
    and sent chunk by chunk. Either way ``done(bytes, complete)`` is called once, and a
    body that fails mid-way never looks complete to the client."""

    def __init__(
        self,
        iterator: Iterator[bytes],
        length: int,
        done: Callable[[int, bool], None],
        status_code: int,
        headers: Mapping[str, str],
        media_type: str,
        socket_send: bool = True,
        prefetch: int = 0,
        splice: bool = True,
    ) -> None:
        # The ASGI path's generators run only if iterated: the direct path never does.
        super().__init__(
            counted(read_ahead(iterator), length, done),
            status_code=status_code,
            headers=headers,
            media_type=media_type,
        )
        self._iterator = iterator
        self._length = length
        self._done = done
        self._socket_send = socket_send
        self._prefetch = prefetch  # the storage's hint (adapters.base.Storage.open_read)
        self._splice = splice
        self._scope: Scope = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        scope = self._scope
        sink: SocketSink | None = scope.get(SINK_KEY)
        if sink is None or not self._socket_send or self._length < MIN_DIRECT:
            await super().stream_response(send)
            return
        head = {"type": "http.response.start", "status": self.status_code}
        await send({**head, "headers": self.raw_headers})
        sock = sink.take()
        if sock is None:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        sent = 0
        try:
            writer = BodyWriter(
                self._iterator, sock, self._length, self._prefetch, splice=self._splice
            )
            try:
                # TimeLimits puts the configured limit in the scope; else the default.
                await writer.run(scope.get(SEND_IDLE_KEY, Settings.send_idle_timeout))
            finally:
                sent = scope[SENT_DIRECT_KEY] = writer.sent
        except BaseException as exc:
            # Cut, whatever went wrong: the duplicate alone would keep the connection
            # open after uvicorn closes its own descriptor, and the client waiting.
            reset(sock)
            sock.close()
            abort = scope.get(ABORT_KEY)
            if callable(abort):
                abort()
            await _close(self._iterator)
            self._done(sent, False)
            if isinstance(exc, ClientGone):
                log.warning("%s (%s %s)", exc, scope.get("method"), scope.get("path"))
                return
            raise
        sock.close()
        self._done(sent, True)
        await _close(self._iterator)
        sink.written(sent)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def receive_into(
    writer: Writer, request: Request, limit: int, socket_bodies: bool = True
) -> tuple[Entry, int]:
    """Stream the request body into ``writer`` and commit it; abort on any failure.

    Receiving and writing overlap: the event loop keeps reading the socket while the
    upload's thread writes the previous block (the writer's ``block_size``, else
    UPLOAD_BUFFER; at most PIPELINE_DEPTH blocks wait in between, so memory stays
    bounded per upload; see gateway/datapath/block_pipe.py).

    A body cut short (client gone, or fewer bytes than its Content-Length) or longer
    than ``limit`` is never committed: nothing appears at the target path and a file
    already there stays as it was."""
    declared = request.headers.get("content-length")
    expected = int(declared) if declared and declared.isdigit() else None
    received = 0
    pipe = BlockPipe(PIPELINE_DEPTH)
    block = getattr(writer, "block_size", UPLOAD_BUFFER)
    request.scope[BODY_BLOCK_KEY] = block  # our server protocol gathers reads to this
    source: SocketSource | None = request.scope.get(SOURCE_KEY)
    # One Content-Length and no other framing: the socket then holds exactly that many
    # body bytes (anything else is the parser's to judge, through ASGI).
    framed = len(request.headers.getlist("content-length")) == 1 and (
        "transfer-encoding" not in request.headers
    )
    if (
        socket_bodies
        and source is not None
        and framed
        and expected is not None
        and expected <= limit
    ):
        taken = source.take(expected)
        if taken is not None:
            return await _receive_from_socket(writer, request, source, taken, block)

    async def read_body() -> None:
        nonlocal received
        parts: list[bytes] = []
        pending = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise CarminError(E.TOO_LARGE, f"body larger than the {limit}-byte limit")
            if not chunk:
                continue
            parts.append(chunk)
            pending += len(chunk)
            if pending >= block:
                await pipe.put(b"".join(parts))
                parts, pending = [], 0
        if expected is not None and received != expected:
            raise CarminError(E.BAD_BODY, "body length does not match Content-Length")
        if parts:
            await pipe.put(b"".join(parts))
        await pipe.finish()

    try:
        pipe.start(writer.write)
        try:
            await read_body()
        except WriterFailed:
            pass  # the writer's own error is raised below
        except BaseException:
            pipe.stop()
            raise
        finally:
            await pipe.wait()  # the writer thread has returned before abort or commit
        if pipe.error is not None:
            raise pipe.error
        entry = await to_thread.run_sync(writer.commit)
        return entry, received
    except ClientDisconnect:
        await abort(writer)
        raise CarminError(E.BAD_BODY, "upload interrupted: nothing was written") from None
    except BaseException:
        await abort(writer)
        raise


async def abort(writer: Writer) -> None:
    # Shielded: a cancelled request (client gone, server stopping) must still clean up.
    with CancelScope(shield=True):
        await to_thread.run_sync(writer.abort)


async def _receive_from_socket(
    writer: Writer, request: Request, source: SocketSource, taken: Taken, block: int
) -> tuple[Entry, int]:
    """receive_into's path when the protocol lets the upload's thread read the socket
    (gateway/datapath/socket_receive.py): the same outcomes, the same errors."""
    defaults = (Settings.body_idle_timeout, Settings.body_min_rate)
    idle, min_rate = request.scope.get(BODY_LIMITS_KEY, defaults)
    complete = False
    try:
        try:
            received = await run_reader(taken, block, writer.write, idle, min_rate)
            complete = True
        finally:
            taken.sock.close()
            source.finish(complete)
        request.scope[RECEIVED_DIRECT_KEY] = received  # with what the parser had gathered
        entry = await to_thread.run_sync(writer.commit)
        return entry, received
    except BodyCut:
        await abort(writer)
        raise CarminError(E.BAD_BODY, "upload interrupted: nothing was written") from None
    except BodyStalled as exc:
        await abort(writer)
        raise CarminError(E.BODY_TIMEOUT, f"{exc}: nothing was written") from None
    except BaseException:
        await abort(writer)
        raise
