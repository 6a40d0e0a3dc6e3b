"""The only module that knows uvicorn's internals: fedgate's server protocol classes.

``fedgate serve`` runs uvicorn with :class:`GuardedHttpTools` (``GuardedH11`` where
httptools is missing). On top of uvicorn's own they

* close a connection that has not delivered a complete request head within
  ``timeout_keep_alive`` seconds (slowloris; gateway/limits.py has the body and response
  limits);
* gather a request body's socket reads into blocks before handing them to the app;
* offer each request its connection's socket (the two offers declared in
  gateway/datapath/scope.py), so a transfer's thread writes a download or reads an upload
  past ASGI (gateway/datapath/socket_send.py, socket_receive.py);
* put the connection's abort() in the scope, for a reader that takes no byte.

All of it reaches into uvicorn's request cycle, which is not public API. The one fallback:
on a uvicorn without every field used here (``missing_internals``), requests get no offer
and bodies are uvicorn's own messages through ASGI, as on any other server (the head
deadline and the abort stay). tests/gateway/test_uvicorn_seam.py checks the installed
uvicorn and fails loudly when it differs.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import struct
from typing import Any

import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.datapath import socket_receive
from gateway.datapath.scope import ABORT_KEY, BODY_BLOCK_KEY, SINK_KEY, SOURCE_KEY, Taken
from gateway.datapath.socket_thread import duplicate

log = logging.getLogger("fedgate")

try:  # the same choice as uvicorn's "auto": httptools when installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Fast
except ImportError:  # pragma: no cover - depends on the install
    _Fast = H11Protocol  # type: ignore[assignment,misc]


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
# (gateway/datapath/transfer.py does, from the backend writer's preference).
BODY_BLOCK = 512 * 1024
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


# What the offers below and the protocol's body gathering use of uvicorn's request cycle,
# which is not public API: a uvicorn without all of it gets the ASGI path, not a crash
# (the one fallback). Checked on the first request (pyproject bounds uvicorn to the
# versions tested), and against the installed uvicorn by tests/gateway/test_uvicorn_seam.py,
# which fails loudly.
_CYCLE_FIELDS = (
    "scope",
    "message_event",
    "response_complete",
    "body",
    "more_body",
    "disconnected",
    "keep_alive",
    "response_started",
    "chunked_encoding",
    "expected_content_length",
    "waiting_for_100_continue",
)


# What the offers and the body gathering use of the protocol (ours, below, on uvicorn's):
# the flow control, the parser and the upgrade check are uvicorn's.
_PROTOCOL_FIELDS = ("transport", "cycle", "flow", "parser", "scope", "body_seen", "_should_upgrade")


def missing_internals(protocol: Any) -> list[str]:
    """The names the offers need that ``protocol`` (a connection with a request under
    way) or its request cycle lack: empty on the uvicorn this was written for."""
    missing = [name for name in _PROTOCOL_FIELDS if not hasattr(protocol, name)]
    cycle = getattr(protocol, "cycle", None)
    missing += [f"cycle.{name}" for name in _CYCLE_FIELDS if not hasattr(cycle, name)]
    flow = getattr(protocol, "flow", None)
    missing += [
        f"flow.{name}"
        for name in ("pause_reading", "resume_reading")
        if not callable(getattr(flow, name, None))
    ]
    return missing


_fits: list[bool] = []


def _seam_fits(protocol: Any) -> bool:
    """Whether the offers can be made on this uvicorn; decided on the first request."""
    if not _fits:
        missing = missing_internals(protocol)
        _fits.append(not missing)
        if missing:
            log.warning(
                "this uvicorn's request cycle differs (no %s): bodies go through ASGI",
                ", ".join(missing),
            )
    return _fits[0]


class _Sink:
    """The :class:`~gateway.datapath.scope.SocketSink` of one request on our protocol."""

    def __init__(self, transport: Any, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle

    def take(self) -> socket.socket | None:
        transport, cycle = self._transport, self._cycle
        if (
            transport.is_closing()
            or cycle.disconnected
            or cycle.chunked_encoding is not False
            or cycle.scope.get("method") == "HEAD"
            or transport.get_write_buffer_size() != 0
        ):
            return None
        return duplicate(transport)

    def written(self, n: int) -> None:
        self._cycle.expected_content_length -= n


class _Source:
    """The :class:`~gateway.datapath.scope.SocketSource` of one request on our protocol:
    while the body is read past it, the protocol stops reading the socket; it gets the
    connection back with a fresh parser once exactly the announced bytes are read."""

    def __init__(self, protocol: GuardedHttpTools, cycle: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle

    def take(self, length: int) -> Taken | None:
        protocol, cycle = self._protocol, self._cycle
        transport = protocol.transport
        if (
            protocol.cycle is not cycle
            or cycle.disconnected
            or cycle.response_started
            or transport.is_closing()
        ):
            return None
        seen = protocol.body_seen
        # Some of the body went to the app already, or too little is left to pay for the
        # duplicate socket and the thread.
        if len(cycle.body) != seen or length - seen < socket_receive.MIN_DIRECT:
            return None
        sock = duplicate(transport)
        if sock is None:
            return None
        protocol.stop_body_timer()
        protocol.flow.pause_reading()  # the socket's bytes are ours until finish()
        if cycle.waiting_for_100_continue:  # as uvicorn's receive() does
            transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            cycle.waiting_for_100_continue = False
        first = bytes(cycle.body)
        cycle.body = bytearray()
        return Taken(first, sock, length - seen)

    def finish(self, complete: bool) -> None:
        # After a whole body the parser, which still waits for the bytes we read, is
        # replaced and reading resumes; otherwise the connection closes after the answer.
        protocol, cycle = self._protocol, self._cycle
        cycle.more_body = False
        if complete and protocol.cycle is cycle:
            protocol.reset_parser()
            protocol.flow.resume_reading()
        else:
            cycle.keep_alive = False


class GuardedHttpTools(_HeadDeadline, _Fast):
    scope: Any
    _body_timer: Any = None
    body_seen = 0  # body bytes of the current request parsed so far

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_body(self, body: bytes) -> None:
        if not _seam_fits(self):  # a uvicorn that differs: its own body handling
            super().on_body(body)
            return
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
        (the socket source above): the old one still waits for those bytes."""
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
        if cycle is not None and cycle.scope is self.scope and _seam_fits(self):
            self.scope[SINK_KEY] = _Sink(self.transport, cycle)
            self.scope[SOURCE_KEY] = _Source(self, cycle)

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
