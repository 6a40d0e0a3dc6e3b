"""A backend's HTTP response body that can hand its socket over to the gateway.

A proxied download is a relay: the gateway's CPU per GiB is what bounds it when the
backend, the gateway and the client share a machine, and most of it is the kernel
copying each byte out of the backend's socket and into the client's. When the rest of
a body is plain bytes on a plain TCP socket, the gateway can move it with ``splice(2)``
instead (gateway/socket_splice.py): the kernel passes the pages from one socket to the
other through a pipe, without copying them into the process and out again.

:class:`ResponseStream` is an ordinary iterator over the body's chunks; its
:meth:`~ResponseStream.take_socket` gives the socket instead, before the first chunk, when
the body qualifies: an urllib3 response with a Content-Length, no content or transfer
coding, and no TLS. The bytes the HTTP client had already read past the headers come with
it. The response's connection is closed at the end, never reused: nothing else knows how
much of it was read.

Which backends offer it is measured, not assumed (1 GiB GETs side by side, spliced
against copied; figures in docs/decisions.md, "Adapter packages"): S3 on SeaweedFS ran
as fast at less CPU, so the S3 adapter offers its socket. Servers that write in small
pieces (XrdHttp, Girder) cost the splice loop more wake-ups than they save, so the gfal
and Girder adapters keep the copying path.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class SocketBody:
    """The rest of a response body: ``head`` (already read by the HTTP client), then
    exactly ``length`` bytes to read from ``sock``; ``timeout`` is the backend's read
    timeout (seconds without a byte before the transfer fails)."""

    head: bytes
    sock: socket.socket
    length: int
    timeout: float


class ResponseStream:
    """The chunks of one response body, or its socket (see the module's docstring)."""

    def __init__(
        self, chunks: Iterator[bytes], response: Any, size: int, close: Callable[[], None]
    ) -> None:
        self._chunks = chunks
        self._response = response  # an urllib3 HTTPResponse, unread
        self._size = size  # the body's length, as announced to the client
        self._close = close
        self._started = False

    def __iter__(self) -> ResponseStream:
        return self

    def __next__(self) -> bytes:
        self._started = True
        return next(self._chunks)

    def take_socket(self) -> SocketBody | None:
        """The body's socket, if the body qualifies and no chunk was taken; may wait
        for the body's first bytes (a blocking call: for the transfer's thread)."""
        if self._started:
            return None
        body = _socket_body(self._response, self._size)
        if body is not None:
            self._started = True  # the socket is the caller's to read now
        return body

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if callable(close):
            close()
        self._close()  # also when the generator never ran (its finally would not)
        # A connection closed before it was released goes back to the pool closed (the
        # pool reconnects): without this, a bounded pool would lose the slot.
        release = getattr(self._response, "release_conn", None)
        if callable(release):
            release()


def _socket_body(response: Any, size: int) -> SocketBody | None:
    fp = getattr(response, "_fp", None)  # http.client.HTTPResponse
    connection = getattr(response, "connection", None)
    sock = getattr(connection, "sock", None)
    buffered = getattr(fp, "fp", None)  # the BufferedReader over the socket
    if (
        fp is None
        or buffered is None
        or not isinstance(sock, socket.socket)
        or isinstance(sock, ssl.SSLSocket)
        or getattr(response, "_fp_bytes_read", 1) != 0
        or getattr(fp, "chunked", True)
        or getattr(fp, "length", None) != size
        or response.headers.get("content-encoding", "identity").lower() != "identity"
    ):
        return None
    timeout = sock.gettimeout()
    try:
        head = buffered.peek(1)[:size]  # what the headers' read pulled in, or a first read
        head = buffered.read(len(head))
    except (OSError, ValueError):
        return None  # the iterator's path reports it the usual way
    sock.setblocking(False)  # the splice loop waits with poll
    return SocketBody(head, sock, size - len(head), timeout or 60.0)
