"""Download bodies written to the client's socket by the transfer's own thread.

Through ASGI, every chunk of a download crosses the event loop: the reader thread hands
it over (a wake-up of the loop), the response sends it through each middleware, and the
transport writes what the socket takes and waits for the rest (more loop turns). That
costs the gateway nearly twice the CPU of a thread copying from the backend's socket
straight to the client's (measured: docs/decisions.md), and on two cores shared with the
backend and the client the CPU is what bounds a relay.

So when our server protocol (gateway/datapath/uvicorn_seam.py) offers it, the response
head still goes through ASGI, and then the transfer's thread writes the body itself to a
duplicate of the connection's socket, then hands the connection back so keep-alive goes
on as usual. The offer is declined (and the body goes through ASGI) on TLS, for HEAD,
when the head is not yet fully on the wire, or when the connection is closing.

Guarantees kept from the ASGI path: a body that would exceed or fall short of its
Content-Length is cut with a reset, so the client never takes it for complete; a reader
that takes no byte for ``send_idle_timeout`` seconds is cut off; a cancelled response
stops the thread at once (shutdown of the socket) before the backend stream is closed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator

from gateway.datapath.handoff import Handoff
from gateway.datapath.socket_splice import available, splice_body
from gateway.datapath.socket_thread import ClientGone, run_in_thread

# Below this a body goes through ASGI: the saving per chunk does not pay for the
# duplicate socket and the thread.
MIN_DIRECT = 256 * 1024


class BodyWriter:
    """Writes a backend's chunks to the client's socket in a thread of its own (a
    transfer holds it for as long as the client takes; anyio's pool must not be starved
    by slow readers). ``sent`` counts the bytes the socket took, for the audit."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        sock: socket.socket,
        expected: int,
        prefetch: int = 0,
        splice: bool = True,
    ) -> None:
        self._chunks = chunks
        self._prefetch = prefetch
        self._splice = splice and available()
        self._sock = sock
        self._expected = expected
        self._stop = threading.Event()
        self.sent = 0

    def _send(self, chunks: Iterable[bytes], idle: float, expected: int | None = None) -> None:
        """Raises the backend's error, ClientGone, or OSError when the backend's stream
        is longer or shorter than announced (``expected``, by default the whole body);
        the caller then resets the connection."""
        expected = self._expected if expected is None else expected
        sock = self._sock
        announced = 0
        for chunk in chunks:
            if self._stop.is_set():
                raise ClientGone("response cancelled")
            announced += len(chunk)
            if announced > expected:
                raise OSError("backend returned more bytes than announced")
            # Each chunk must be taken within the idle limit, as through ASGI (where the
            # limit bounds each send of a chunk): a reader trickling a few bytes a second
            # would otherwise hold the backend stream and this thread for ever.
            deadline = time.monotonic() + idle
            view = memoryview(chunk)
            while view:
                left = deadline - time.monotonic()
                try:
                    if left <= 0:
                        raise TimeoutError
                    sock.settimeout(left)
                    n = sock.send(view)
                except TimeoutError:
                    raise ClientGone(f"client took no data for {idle:g} s") from None
                except OSError as exc:
                    raise ClientGone(f"client connection lost: {exc.strerror or exc}") from None
                self.sent += n
                view = view[n:]
        if announced != expected:
            raise OSError("backend returned fewer bytes than announced")

    def _spliced(self, idle: float) -> bool:
        """The body moved socket to socket by the kernel, when the backend's stream
        offers its socket (gateway/datapath/socket_splice.py); False: nothing was taken."""
        take = getattr(self._chunks, "take_socket", None)
        body = take() if callable(take) else None
        if body is None:
            return False
        if len(body.head) + body.length != self._expected:
            raise OSError("backend's body differs from the announced length")
        self._send([body.head] if body.head else [], idle, len(body.head))

        def count(n: int) -> None:
            self.sent += n

        splice_body(body, self._sock, idle, self._stop, count)
        return True

    async def run(self, idle: float) -> None:
        """Write the whole body; raises what ``_send`` raised (cancellation: see
        gateway/datapath/socket_thread.py)."""
        await run_in_thread(lambda: self._write(idle), self._sock, self._stop, "fedgate-download")

    def _write(self, idle: float) -> None:
        if self._splice and not self._prefetch and self._spliced(idle):
            return
        prefetch = Prefetch(self._chunks, self._prefetch) if self._prefetch else None
        try:
            self._send(prefetch or self._chunks, idle)
        finally:
            if prefetch is not None:
                prefetch.stop()


class Prefetch:
    """A backend's chunks pulled by a thread of their own, up to ``depth`` ahead of the
    writer. For backends that answer one request per read (gfal2's ``pread``, iRODS),
    the next read then runs while the writer sends; a backend streaming from a socket
    reads ahead in the kernel's buffers anyway."""

    def __init__(self, chunks: Iterator[bytes], depth: int) -> None:
        self._handoff: Handoff[bytes] = Handoff(depth)
        self._thread = threading.Thread(
            target=self._handoff.feed, args=(chunks,), name="fedgate-prefetch", daemon=True
        )
        self._thread.start()

    def __iter__(self) -> Iterator[bytes]:
        """The chunks, then the backend's error if it had one."""
        return self._handoff.items()

    def stop(self) -> None:
        """Until the thread has returned: the backend iterator is its own till then."""
        self._handoff.stop()
        self._thread.join()
