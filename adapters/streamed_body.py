"""Request bodies streamed from a writer's thread to a sender thread.

An upload's ``write`` calls put the client's blocks into a :class:`Feed` (a short queue:
back-pressure, not buffering); a sender thread sends HTTP requests whose bodies are
:class:`Body` objects taking their bytes from that feed as the HTTP library sends them.
So a request body of any size streams with a few blocks in memory, and receiving from
the client overlaps sending to the storage. ``Feed.cancel`` makes the body raise
:class:`Cancelled` inside the HTTP library, which then drops the connection: the storage
sees a cut request, never a short complete one.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from adapters.base import StorageError

QUEUE_BLOCKS = 4  # blocks waiting for the sender, per upload (a few MiB)
_POLL = 0.25  # seconds between checks that the sender is still alive


class Cancelled(Exception):
    """Raised inside a chunk body to break off its request (the upload is aborted)."""


_CANCEL = object()
Block = bytes | memoryview


class Feed:
    """The bytes of one upload on their way from ``write`` to the sender thread, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._rest: Block | None = None  # a block's tail left by the previous chunk

    def put(self, block: Block | bytearray, alive: Callable[[], None]) -> None:
        """Queue a block; ``alive`` raises the sender's error if it stopped meanwhile.

        The block is sent after this call returns, so a caller's buffer that may change
        (a bytearray, a view of one) is copied; bytes and views of bytes are kept as
        they are."""
        if not (type(block) is bytes or (type(block) is memoryview and type(block.obj) is bytes)):
            block = bytes(block)
        while True:
            try:
                self._queue.put(block, timeout=_POLL)
                return
            except queue.Full:
                alive()

    def cancel(self) -> None:
        """Wake the sender with a cancel; called by the writer's own thread, the only
        producer, so once the queue is drained the put cannot block."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._queue.put_nowait(_CANCEL)

    def chunk(self, size: int) -> Body:
        """A request body of the next ``size`` bytes."""
        return Body(self, size)

    def take(self, limit: int) -> Block:
        """The next block, at most ``limit`` bytes of it (the rest waits for the next)."""
        block, self._rest = self._rest, None
        if block is None:
            block = self._queue.get()
            if block is _CANCEL:
                raise Cancelled
        if len(block) > limit:
            view = memoryview(block)
            block, self._rest = view[:limit], view[limit:]
        return block


class Body:
    """The body of one request: exactly ``size`` bytes taken from the feed while they are
    sent. requests and urllib3 send an iterable that has a ``len`` under Content-Length,
    one ``sendall`` per block."""

    __slots__ = ("_feed", "_size", "_used")

    def __init__(self, feed: Feed, size: int) -> None:
        self._feed = feed
        self._size = size
        self._used = False

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Block]:
        # The bytes are consumed as they are sent: a retry must fail, not send others.
        if self._used:
            raise StorageError("a streamed request body cannot be sent twice")
        self._used = True
        return self._blocks()

    def _blocks(self) -> Iterator[Block]:
        need = self._size
        while need:
            block = self._feed.take(need)
            need -= len(block)
            yield block


def in_thread(fn: Callable[[], Any], name: str) -> Future[Any]:
    """Run ``fn`` in a daemon thread of its own: a sender lives as long as its upload,
    so in a shared pool one slow upload would hold up the next ones."""
    future: Future[Any] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # handed to the writer's thread, raised there
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def check_sender(sender: Future[Any] | None, ended_early: str) -> None:
    """Raise the sender's error if it has stopped: a writer waiting for room in the feed
    would otherwise wait for a thread that will never take another block."""
    if sender is not None and sender.done():
        sender.result()
        raise StorageError(ended_early)
