"""Bounded hand-offs of data between the event loop and one thread per transfer.

The obvious design — the event loop awaits ``to_thread.run_sync`` for every block — puts
the event loop on the backend's critical path: after every block the thread must wake
the loop, the loop must get round to the transfer's task (behind the socket work it is
busy with), and only then is the next block handed over: on iRODS uploads the writer
spent more time waiting in its loop than writing (measured: docs/decisions.md).

Here one thread runs for the whole transfer and exchanges blocks with the loop through a
small thread-safe queue (gateway/datapath/handoff.py), so it works back-to-back while the
queue has room (reading) or blocks (writing); the loop is woken only when it is itself
waiting on the queue.

The threads are our own, not anyio's worker pool: a transfer holds its thread for as long
as the client takes, and 40 slow uploads must not starve every other request of the
pool's 40 threads. Each transfer has one thread, so the backend object is only ever used
from it, and the thread has returned before anyone aborts, commits or closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

import anyio
from anyio import CancelScope

from gateway.datapath.handoff import Handoff


class WriterFailed(Exception):
    """Raised by ``BlockPipe.put`` once the writer thread has stopped on an error."""


class _TransferThread:
    """A thread for one transfer, its hand-off (queue, stop flag, error), the loop's
    wake-ups, and an awaitable end."""

    def __init__(self, depth: int, name: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._name = name
        self._wakeup = anyio.Event()
        self._waiting = False
        self._finished = anyio.Event()
        # The thread wakes the loop after each block it moves, if the loop waits.
        self._handoff: Handoff[bytes] = Handoff(depth, moved=self._wake)

    @property
    def error(self) -> BaseException | None:
        return self._handoff.error

    def _start(self, target: Callable[[], None]) -> None:
        def body() -> None:
            try:
                target()
            except BaseException as exc:  # kept for the loop side, which raises it
                self._handoff.error = exc
            finally:
                self._wake(always=True)
                self._loop.call_soon_threadsafe(self._finished.set)

        threading.Thread(target=body, name=self._name, daemon=True).start()

    async def wait(self) -> None:
        """Until the thread has returned (even if the caller is being cancelled)."""
        with CancelScope(shield=True):
            await self._finished.wait()

    def _wake(self, always: bool = False) -> None:
        if self._waiting or always:
            self._waiting = False
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _arm(self) -> anyio.Event:
        """Before the loop re-checks the queue and sleeps: the next wake-up is for it."""
        self._wakeup = anyio.Event()
        self._waiting = True
        return self._wakeup


class BlockPipe(_TransferThread):
    """Upload: the loop puts blocks, one writer thread writes them in order."""

    def __init__(self, depth: int) -> None:
        super().__init__(depth, "fedgate-upload")

    def start(self, write: Callable[[bytes], None]) -> None:
        self._start(lambda: self._handoff.drain(write, keep_taking=False))

    async def put(self, block: bytes | None) -> None:
        """Queue a block (None: the end); waits without blocking the loop while the
        queue is full. Raises WriterFailed once the writer thread has failed."""
        while True:
            if self.error is not None:
                raise WriterFailed from self.error
            try:
                self._handoff.put_nowait(block)
                return
            except queue.Full:
                pass
            wakeup = self._arm()
            if not self._handoff.full() or self.error is not None:  # changed meanwhile
                self._waiting = False
                continue
            await wakeup.wait()

    async def finish(self) -> None:
        """No more blocks: the writer thread returns once it has written the queued ones."""
        await self.put(None)

    def stop(self) -> None:
        """Stop the writer thread after its current block; queued blocks are dropped."""
        self._handoff.stop()
        # Wakes a thread waiting on an empty queue; a full queue means it is not waiting,
        # and it checks the stop flag before its next block.
        with contextlib.suppress(queue.Full):
            self._handoff.put_nowait(None)


class ReadAhead(_TransferThread):
    """Download: one reader thread pulls a backend's chunks up to ``depth`` ahead of the
    loop, which sends earlier ones meanwhile: the backend read and the client write
    overlap instead of taking turns."""

    def __init__(self, depth: int) -> None:
        super().__init__(depth, "fedgate-download")

    def start(self, chunks: Iterator[bytes]) -> None:
        # A backend error is kept before the end marker, so get() raises it.
        self._start(lambda: self._handoff.feed(chunks))

    async def get(self) -> bytes | None:
        """The next chunk, or None at the end; raises the backend's error."""
        while True:
            try:
                chunk = self._handoff.take_nowait()
            except queue.Empty:
                wakeup = self._arm()
                if not self._handoff.empty():
                    self._waiting = False
                    continue
                await wakeup.wait()
                continue
            if chunk is None and self.error is not None:
                raise self.error
            return chunk

    def stop(self) -> None:
        """The client is gone or done: the reader thread returns after its current chunk."""
        self._handoff.stop()
