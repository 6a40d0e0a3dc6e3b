"""The one bounded hand-off every transfer's thread trades its blocks through.

A transfer runs a thread of its own (a backend reader, a backend writer) on one side of
a small queue; the other side is another thread (socket_send's Prefetch,
socket_receive's WriteBehind) or the event loop (block_pipe's ReadAhead and BlockPipe,
which add the loop's waiting on top). What they share is here: items in order, ``None``
after the last, the thread's error carried to the other side, and a stop flag the
thread checks between items, so a transfer given up never leaves a thread blocked on
the queue for ever. The queue's depth bounds what one transfer holds in memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
# How often a thread waiting for room re-checks the stop flag.
_RECHECK_S = 0.5


def _nothing() -> None:
    pass


class Handoff(Generic[T]):
    """A queue of at most ``depth`` items between a thread and its other side.

    ``moved`` is called by the thread after each item it puts or takes (block_pipe wakes
    the event loop with it)."""

    def __init__(self, depth: int, moved: Callable[[], None] = _nothing) -> None:
        self._queue: queue.Queue[T | None] = queue.Queue(maxsize=depth)  # None: the end
        self._stopped = threading.Event()
        self._moved = moved
        self.error: BaseException | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def stop(self) -> None:
        """The other side gives up: the thread returns after its current item."""
        self._stopped.set()

    # --- a producing thread -----------------------------------------------------------

    def feed(self, items: Iterable[T]) -> None:
        """Put every item, then the end. An error of ``items`` is kept in ``error``
        before the end is put, so the consumer sees the items before it, then the error.
        Returns early, without the end, once stopped."""
        try:
            for item in items:
                if not self.offer(item):
                    return
        except BaseException as exc:
            self.error = exc
        self.offer(None)

    def offer(self, item: T | None) -> bool:
        """Put ``item`` (None: the end), waiting for room; False once stopped."""
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=_RECHECK_S)
            except queue.Full:
                continue
            self._moved()
            return True
        return False

    # --- a consuming thread -----------------------------------------------------------

    def drain(self, write: Callable[[T], None], keep_taking: bool) -> None:
        """Write each item until the end, or a stop. A failing ``write`` is kept in
        ``error``; then, with ``keep_taking``, later items are still taken and dropped
        until the end (a producing thread blocked on a full queue is let go on), else
        the thread returns at once (the event loop, which never blocks on the queue,
        sees ``error`` instead)."""
        while True:
            item = self._queue.get()
            self._moved()
            if item is None or self._stopped.is_set():
                return
            if self.error is not None:
                continue  # taken and dropped after a failure
            try:
                write(item)
            except BaseException as exc:  # raised to the other side through ``error``
                self.error = exc
                if not keep_taking:
                    return

    # --- the other side -----------------------------------------------------------------

    def put(self, item: T | None) -> None:
        """Put ``item`` (None: the end), blocking while the queue is full."""
        self._queue.put(item)

    def put_nowait(self, item: T | None) -> None:
        """Raises queue.Full when there is no room."""
        self._queue.put_nowait(item)

    def take_nowait(self) -> T | None:
        """Raises queue.Empty when nothing is there."""
        return self._queue.get_nowait()

    def full(self) -> bool:
        return self._queue.full()

    def empty(self) -> bool:
        return self._queue.empty()

    def items(self) -> Iterator[T]:
        """Every item until the end, then the thread's error if it had one."""
        while (item := self._queue.get()) is not None:
            yield item
        if self.error is not None:
            raise self.error
