"""Moving bytes between an ASGI request/response and a synchronous backend.

Backend libraries are synchronous, so every backend call runs in a worker thread. A
thread hop costs tens of microseconds: reads hop once per ~1 MiB chunk, listings once per
batch of entries, and upload bodies are coalesced to ~1 MiB before each hop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

from anyio import CancelScope, to_thread
from starlette.requests import ClientDisconnect, Request

from adapters.base import Entry, Writer
from gateway.errors import CarminError, E

T = TypeVar("T")
UPLOAD_BUFFER = 1024 * 1024
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
) -> AsyncIterator[bytes]:
    """Pass chunks through, count them, and report (bytes, complete) when finished.

    If the backend yields more than ``expected`` bytes the stream is broken off rather
    than sending a body that disagrees with its Content-Length."""
    sent = 0
    ok = False
    try:
        async for chunk in chunks:
            sent += len(chunk)
            if expected is not None and sent > expected:
                raise OSError("backend returned more bytes than announced")
            yield chunk
        ok = expected is None or sent == expected
        if not ok:
            raise OSError("backend returned fewer bytes than announced")
    finally:
        # The client may hang up the moment it has every byte (its Content-Length is
        # met), cancelling us before the backend iterator has said it is finished.
        done(sent, ok or (expected is not None and sent == expected))


async def receive_into(writer: Writer, request: Request, limit: int) -> tuple[Entry, int]:
    """Stream the request body into ``writer`` and commit it; abort on any failure.

    A body cut short (client gone, or fewer bytes than its Content-Length) or longer
    than ``limit`` is never committed: nothing appears at the target path and a file
    already there stays as it was."""
    declared = request.headers.get("content-length")
    expected = int(declared) if declared and declared.isdigit() else None
    received = 0
    buffer = bytearray()
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise CarminError(E.TOO_LARGE, f"body larger than the {limit}-byte limit")
            buffer += chunk
            if len(buffer) >= UPLOAD_BUFFER:
                data, buffer = bytes(buffer), bytearray()
                await to_thread.run_sync(writer.write, data)
        if expected is not None and received != expected:
            raise CarminError(E.BAD_BODY, "body length does not match Content-Length")
        if buffer:
            await to_thread.run_sync(writer.write, bytes(buffer))
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
