"""Upload bodies read from the client's socket by the upload's own thread.

The counterpart of gateway/datapath/socket_send.py. Through ASGI every socket read of a
body (64–256 KiB) goes through the HTTP parser, is gathered into a block by the protocol,
and crosses the event loop and each middleware before the upload's writer thread gets
it. When our server protocol (gateway/datapath/uvicorn_seam.py) offers it, a body with a
Content-Length is read instead by one thread straight from a duplicate of the
connection's socket, into
blocks of the writer's size, which a second thread writes meanwhile (WriteBehind). The
protocol stops reading the socket for that time and gets the connection back, with a
fresh parser, once exactly the announced bytes are read.

The rules of the ASGI path hold: a body cut short (client gone), or slower than
``body_min_rate`` over a ``body_idle_timeout`` window, or idle for that long, is never
committed; such a connection is closed after the error answer, since the rest of its
body was never read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from gateway.datapath.handoff import Handoff
from gateway.datapath.scope import Taken
from gateway.datapath.socket_thread import run_in_thread

# A smaller remainder goes through ASGI: reading it directly would not pay for the
# duplicate socket and the thread.
MIN_DIRECT = 1024 * 1024


class BodyStalled(Exception):
    """No byte for the idle limit, or slower than the minimum rate over a window."""


class BodyCut(Exception):
    """The client closed or reset the connection before the end of the body."""


class WriteBehind:
    """The writer's calls in a thread of their own, one block behind the socket reads: a
    backend that pays a round trip per write (iRODS, gfal2 over root://) writes while the
    next block arrives, and a writer that hashes (md5 on the way) uses the other core.
    One block waits in between at most: an upload holds about three blocks."""

    def __init__(self, write: Callable[[bytes], None], name: str = "fedgate-upload") -> None:
        # After a failure, blocks are taken and dropped: the reader's next put() raises.
        self._handoff: Handoff[bytes] = Handoff(1)
        self._thread = threading.Thread(
            target=self._handoff.drain, args=(write, True), name=name, daemon=True
        )
        self._thread.start()

    @property
    def error(self) -> BaseException | None:
        return self._handoff.error

    def put(self, block: bytes) -> None:
        if self._handoff.error is not None:
            raise self._handoff.error
        self._handoff.put(block)

    def close(self) -> None:
        """Until the thread has returned: every queued block written, or dropped after a
        failure. The writer is then free for commit or abort."""
        self._handoff.put(None)
        self._thread.join()


def read_body(
    taken: Taken,
    block: int,
    write: Callable[[bytes], None],
    idle: float,
    min_rate: int,
    stop: threading.Event,
) -> int:
    """Read the rest of the body into blocks of ``block`` bytes, written by a WriteBehind
    thread; returns the body's length. Raises BodyCut, BodyStalled, or the writer's
    error, always after the writer's thread has returned."""
    behind = WriteBehind(write)
    try:
        total = _read_into(taken, block, behind.put, idle, min_rate, stop)
    finally:
        behind.close()
    if behind.error is not None:
        raise behind.error
    return total


def _read_into(
    taken: Taken,
    block: int,
    put: Callable[[bytes], None],
    idle: float,
    min_rate: int,
    stop: threading.Event,
) -> int:
    sock = taken.sock
    sock.settimeout(idle)  # per recv(): the idle limit
    buf = bytearray(max(block, len(taken.first)))
    view = memoryview(buf)
    filled = len(taken.first)
    view[:filled] = taken.first
    total = filled
    remaining = taken.remaining
    window_start, window_bytes = time.monotonic(), 0
    while remaining:
        if stop.is_set():
            raise BodyCut("upload cancelled")
        if filled == len(buf):
            put(bytes(view[:filled]))
            filled = 0
        try:
            n = sock.recv_into(view[filled:], min(remaining, len(buf) - filled))
        except TimeoutError:
            raise BodyStalled(f"no request body byte for {idle:g} s") from None
        except OSError as exc:
            raise BodyCut(f"connection lost: {exc.strerror or exc}") from None
        if n == 0:
            raise BodyCut("the client closed the connection before the end of the body")
        filled += n
        total += n
        remaining -= n
        window_bytes += n
        now = time.monotonic()
        if now - window_start >= idle:
            if window_bytes < min_rate * (now - window_start):
                raise BodyStalled(f"request body slower than {min_rate} bytes/s")
            window_start, window_bytes = now, 0
    if filled:
        put(bytes(view[:filled]))
    return total


async def run_reader(
    taken: Taken, block: int, write: Callable[[bytes], None], idle: float, min_rate: int
) -> int:
    """read_body in a thread of its own (cancellation: see gateway/datapath/socket_thread.py)."""
    stop = threading.Event()
    return await run_in_thread(
        lambda: read_body(taken, block, write, idle, min_rate, stop),
        taken.sock,
        stop,
        "fedgate-upload-read",
    )
