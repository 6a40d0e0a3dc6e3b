"""Time limits that stop slow or stuck clients from holding the gateway's resources.

Three places a client can stall, and what bounds each:

* **the request head** (slowloris): uvicorn times out idle keep-alive connections, but
  neither a fresh connection that sends nothing nor one that trickles its headers. Our
  protocol classes (gateway/datapath/uvicorn_seam.py) give every connection
  ``timeout_keep_alive`` seconds to deliver a complete request head, when it opens and
  again after each response.
* **the request body**: :class:`TimeLimits` fails a pending read after
  ``body_idle_timeout`` seconds with no byte, and a body that arrives slower than
  ``body_min_rate`` bytes/s over such a window — one byte a second is not an upload —
  with 408 (40801). An upload cut this way is aborted like any other: nothing is written.
* **the response**: a reader that does not take the bytes we send (one byte a second,
  or not at all) blocks our write once the socket buffers are full; after
  ``send_idle_timeout`` seconds the connection is closed, so the backend stream it
  holds is released and the client never sees a complete-looking body.
"""

from __future__ import annotations

import logging
import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.datapath.scope import ABORT_KEY, BODY_LIMITS_KEY, SEND_IDLE_KEY
from gateway.errors import CarminError, E

log = logging.getLogger("fedgate")


class _SendStalled(Exception):
    pass


class TimeLimits:
    """ASGI middleware: time limits on reading the request body and sending the answer."""

    def __init__(
        self, app: ASGIApp, body_idle_timeout: float, body_min_rate: int, send_idle_timeout: float
    ) -> None:
        self.app = app
        self.body_idle = body_idle_timeout
        self.min_rate = body_min_rate
        self.send_idle = send_idle_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[SEND_IDLE_KEY] = self.send_idle  # for bodies written or read past ASGI
        scope[BODY_LIMITS_KEY] = (self.body_idle, self.min_rate)
        body_done = False
        window_start: float | None = None  # from the first read: auth may come first
        window_bytes = 0

        async def timed_receive() -> Message:
            nonlocal body_done, window_start, window_bytes
            if body_done:  # e.g. a disconnect listener while the response streams
                return await receive()
            if window_start is None:
                window_start = time.monotonic()
            with anyio.move_on_after(self.body_idle):
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body", False):
                    body_done = True
                    return message
                window_bytes += len(message.get("body", b""))
                now = time.monotonic()
                if now - window_start >= self.body_idle:
                    if window_bytes < self.min_rate * (now - window_start):
                        raise CarminError(
                            E.BODY_TIMEOUT,
                            f"request body slower than {self.min_rate} bytes/s: nothing was "
                            "written",
                        )
                    window_start, window_bytes = now, 0
                return message
            raise CarminError(
                E.BODY_TIMEOUT,
                f"no request body byte for {self.body_idle:g} s: nothing was written",
            )

        async def timed_send(message: Message) -> None:
            if message["type"] != "http.response.body":
                await send(message)
                return
            with anyio.move_on_after(self.send_idle):
                await send(message)
                return
            raise _SendStalled

        try:
            await self.app(scope, timed_receive, timed_send)
        except _SendStalled:
            # The response has started, so there is no answer left to give. A graceful
            # close would wait for the reader to drain our buffers (forever): abort the
            # connection when the server lets us (our protocol classes), else returning
            # makes uvicorn close it. Either way the client sees a cut body.
            abort = scope.get(ABORT_KEY)
            if callable(abort):
                abort()
            log.warning(
                "client took no data for %g s: connection closed (%s %s)",
                self.send_idle,
                scope.get("method"),
                scope.get("path"),
            )
