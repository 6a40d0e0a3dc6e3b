"""Receive a body into a file while a second thread computes its md5.

MD5 runs at a few hundred MB/s per core, about the speed of the network on a fast link:
done in line it halves the throughput. Here the receiving thread reads a block
(``readinto`` a reused buffer), writes it and passes it on; a hashing thread updates the
md5 (hashlib releases the GIL for large updates) and gives the buffer back. ``DEPTH``
buffers bound the memory and let the network run ahead of the hash by that much.

When the pump stops, for whatever reason, the hash has seen exactly the bytes written:
the part file and the md5 stay in step, so a later attempt resumes from both.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

BLOCK = 1024 * 1024
DEPTH = 8


class Source(Protocol):
    def readinto(self, buffer: memoryview) -> int: ...


class _Hasher(threading.Thread):
    def __init__(self, md5: Any, depth: int, block: int) -> None:
        super().__init__(name="fedgate-md5", daemon=True)
        self.md5 = md5
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(depth):
            self.free.put(bytearray(block))
        self.work: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None

    def run(self) -> None:
        while (item := self.work.get()) is not None:
            buffer, n = item
            try:
                if self.error is None:
                    self.md5.update(memoryview(buffer)[:n])
            except BaseException as exc:  # reported by finish(), never lost
                self.error = exc
            self.free.put(buffer)

    def finish(self) -> None:
        self.work.put(None)
        self.join()
        if self.error is not None:
            raise self.error


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def pump(
    source: Source,
    fd: int,
    md5: Any | None,
    progress: Callable[[int], None],
    *,
    expected: int | None = None,
    block: int = BLOCK,
    depth: int = DEPTH,
) -> int:
    """Copy ``source`` to the file descriptor ``fd`` until the body ends, feeding
    ``md5`` (None: no hash) and calling ``progress(n)`` after each block is written.
    Returns the bytes copied. Exceptions of the source or the disk propagate once the
    hash caught up."""
    if md5 is None or (expected is not None and expected <= block):
        size = block if expected is None else max(1, min(block, expected))
        return _pump_serial(source, fd, md5, progress, size)
    hasher = _Hasher(md5, depth, block)
    hasher.start()
    copied = 0
    try:
        while True:
            buffer = hasher.free.get()
            view = memoryview(buffer)
            n = source.readinto(view)
            if n <= 0:
                hasher.free.put(buffer)
                return copied
            _write_all(fd, view[:n])
            hasher.work.put((buffer, n))
            copied += n
            progress(n)
    finally:
        hasher.finish()


def _pump_serial(
    source: Source, fd: int, md5: Any | None, progress: Callable[[int], None], size: int
) -> int:
    """A small body (one block), or no hash: one buffer, no thread."""
    view = memoryview(bytearray(size))
    copied = 0
    while (n := source.readinto(view)) > 0:
        _write_all(fd, view[:n])
        if md5 is not None:
            md5.update(view[:n])
        copied += n
        progress(n)
    return copied
