"""Time limits that stop slow or stuck clients from holding the gateway's resources.

Three places a client can stall, and what bounds each:

* **the request head** (slowloris): uvicorn times out idle keep-alive connections, but
  neither a fresh connection that sends nothing nor one that trickles its headers. The
  protocol classes below give every connection ``timeout_keep_alive`` seconds to deliver
  a complete request head, when it opens and again after each response.
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

import contextlib
import functools
import logging
import socket
import struct
import time
from typing import Any

import anyio
import httptools
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.errors import CarminError, E
from gateway.socket_receive import BODY_LIMITS_KEY, SOURCE_KEY, SocketSource
from gateway.socket_send import SEND_IDLE_KEY, SINK_KEY, SocketSink

log = logging.getLogger("fedgate")

try:  # the same choice as uvicorn's "auto": httptools when installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Fast
except ImportError:  # pragma: no cover - depends on the install
    _Fast = H11Protocol  # type: ignore[assignment,misc]


# Scope key under which our protocol classes put the connection's abort().
ABORT_KEY = "fedgate.abort"


class _SendStalled(Exception):
    pass


def _reset(transport: Any) -> None:
    """Drop the connection now. A plain close would still queue a FIN behind the
    megabytes the reader has not taken; linger 0 makes the kernel send a reset and free
    them."""
    if transport.is_closing():  # already closed: uvloop's socket object has no fd left
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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


class _HeadDeadline:
    """Close a connection that has not delivered a complete request head in time."""

    loop: Any
    transport: Any
    cycle: Any
    timeout_keep_alive: int
    _head_timer: Any = None

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_expired)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _waiting_for_head(self) -> bool:
        return self.cycle is None or bool(self.cycle.response_complete)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._waiting_for_head() and not self.transport.is_closing():
            self.transport.close()


# Request-body coalescing (httptools only). uvicorn hands the app one message per socket
# read — 64 KiB on loopback — and each costs the app a trip through the middleware and
# the upload pipeline: ~16,000 per GiB. Reads are gathered instead until a block waits
# (then reading pauses, as uvicorn does past its 64 KiB mark) or BODY_FLUSH seconds have
# passed since the first of them, so a slow client's bytes still reach the app (and its
# body-rate limits) without waiting for a full block. The block is BODY_BLOCK unless the
# app, knowing where the body goes, puts another size under BODY_BLOCK_KEY in the scope
# (gateway/transfer.py does, from the backend writer's preference).
BODY_BLOCK = 512 * 1024
BODY_BLOCK_KEY = "fedgate.body_block"
BODY_FLUSH = 0.02


class _BodyParts:
    """Stands in for uvicorn's ``cycle.body`` bytearray: keeps the socket reads as they
    came and joins them once when the app takes the message (``bytes(body)``), instead
    of copying each into a growing bytearray and the whole again into bytes. A message
    of one read is handed over without any copy."""

    __slots__ = ("_parts", "_size")

    def __init__(self, first: bytes | bytearray = b"") -> None:
        self._parts: list[bytes] = [bytes(first)] if first else []
        self._size = len(first)

    def append(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)

    def __len__(self) -> int:
        return self._size

    def __bytes__(self) -> bytes:
        return b"".join(self._parts)


# What the socket paths (gateway/socket_send.py, gateway/socket_receive.py) use of
# uvicorn's request cycle, which is not public API: a uvicorn without all of it gets
# the ASGI path, not a crash. Checked on the first request (pyproject bounds uvicorn to
# the versions tested).
_CYCLE_FIELDS = (
    "scope",
    "body",
    "more_body",
    "disconnected",
    "keep_alive",
    "response_started",
    "chunked_encoding",
    "expected_content_length",
    "waiting_for_100_continue",
)
_fits: list[bool] = []


def _cycle_fits(cycle: Any) -> bool:
    if not _fits:
        _fits.append(all(hasattr(cycle, name) for name in _CYCLE_FIELDS))
        if not _fits[0]:
            log.warning("this uvicorn's request cycle differs: bodies go through ASGI")
    return _fits[0]


class GuardedHttpTools(_HeadDeadline, _Fast):
    scope: Any
    _body_timer: Any = None
    body_seen = 0  # body bytes of the current request parsed so far

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        self.body_seen += len(body)
        parts = cycle.body
        if type(parts) is not _BodyParts:  # uvicorn starts each message with a bytearray
            parts = cycle.body = _BodyParts(parts)
        parts.append(body)
        if len(parts) >= self.scope.get(BODY_BLOCK_KEY, BODY_BLOCK):
            self.flow.pause_reading()
            self._deliver_body()
        elif self._body_timer is None:
            self._body_timer = self.loop.call_later(BODY_FLUSH, self._deliver_body)

    def stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def reset_parser(self) -> None:
        """A fresh parser for the next request, after a body was read past this one
        (gateway/socket_receive.py): the old one still waits for those bytes."""
        self.parser = httptools.HttpRequestParser(self)

    def _deliver_body(self) -> None:
        self.stop_body_timer()
        if self.cycle is not None:
            self.cycle.message_event.set()

    def on_message_complete(self) -> None:
        self._deliver_body()
        super().on_message_complete()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.body_seen = 0
        self.scope[ABORT_KEY] = functools.partial(_reset, self.transport)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # Bound to this request's cycle: a pipelined request replaces self.cycle while
        # this one may still be answering.
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and _cycle_fits(cycle):
            self.scope[SINK_KEY] = SocketSink(self.transport, cycle)
            self.scope[SOURCE_KEY] = SocketSource(self, cycle)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().connection_lost(exc)


class GuardedH11(_HeadDeadline, H11Protocol):
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._waiting_for_head():
            self._disarm_head_deadline()
            # The app task starts on the next loop turn, so it sees this key.
            self.cycle.scope[ABORT_KEY] = functools.partial(_reset, self.transport)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)
