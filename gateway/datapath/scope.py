"""What the server protocol (gateway/datapath/uvicorn_seam.py), the time limits
(gateway/limits.py), the transfers and the access log pass each other in the ASGI scope.

The protocol offers a request's connection to the transfers with two objects: a
:class:`SocketSink` (write the response body to the socket) and a :class:`SocketSource`
(read the rest of the request body from it). Either may be absent — another server, TLS,
a uvicorn whose internals differ — and then bodies go through ASGI.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Protocol

# Set by the server protocol: the connection's abort() (a reset, not a graceful close),
# and the two offers below.
ABORT_KEY = "fedgate.abort"
SINK_KEY = "fedgate.socket_sink"
SOURCE_KEY = "fedgate.socket_source"
# Set by the app for the protocol: the size of the body messages it gathers socket reads
# into (gateway/datapath/transfer.py, from the backend writer's preference).
BODY_BLOCK_KEY = "fedgate.body_block"
# Set by TimeLimits: the send idle limit, and (idle seconds, minimum bytes/s) of a body.
SEND_IDLE_KEY = "fedgate.send_idle"
BODY_LIMITS_KEY = "fedgate.body_limits"
# Set by the transfers: body bytes written and read past ASGI (for the byte metrics).
SENT_DIRECT_KEY = "fedgate.sent_direct"
RECEIVED_DIRECT_KEY = "fedgate.received_direct"


@dataclass
class Taken:
    """The rest of a request body, handed over by a :class:`SocketSource`."""

    first: bytes  # body bytes the parser had already gathered
    sock: socket.socket
    remaining: int  # bytes still to read from the socket


class SocketSink(Protocol):
    """What a server protocol offers one request: the connection's socket, once the
    response head is out."""

    def take(self) -> socket.socket | None:
        """A duplicate of the connection's socket to write the body to, or None when the
        body must go through ASGI. Called on the event loop, after the head was sent."""
        ...

    def written(self, n: int) -> None:
        """Account the bytes written past the protocol, so that it completes the
        response (its Content-Length check) when the final empty body is sent."""
        ...


class SocketSource(Protocol):
    """What a server protocol offers one request: the rest of its body, read from the
    socket."""

    def take(self, length: int) -> Taken | None:
        """The connection's socket to read the rest of a ``length``-byte body from, or
        None when the body must come through ASGI. Called on the event loop before the
        app has received any of the body."""
        ...

    def finish(self, complete: bool) -> None:
        """Hand the connection back: after a whole body, keep-alive goes on; otherwise
        the connection is closed once the answer is sent."""
        ...
