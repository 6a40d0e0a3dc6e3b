"""Download bodies over the standard library's ``http.client``.

httpx hands a body over as fresh ``bytes`` objects through several layers of Python
(h11, httpcore, httpx): on a fast link that tops out at a few hundred MB/s. With
``http.client`` a body is read by ``HTTPResponse.readinto`` straight into a buffer the
caller reuses, one system call per few hundred KiB and no copy in Python — several
GB/s. Only the ``GET`` of a file's content goes this way; the small JSON calls stay on
httpx.

This module knows nothing of credentials: the caller (``Http.stream``) decides which
headers go to which origin. Connections are kept alive per origin (one idle connection
each) so that a tree of small files does not pay a TCP (and TLS) handshake per file.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from email.message import Message
from urllib.parse import urlsplit

from gateway.client.uris import origin

Origin = tuple[str, str, int]


class TransportFailure(Exception):
    """A connection-level failure (refused, reset, timeout, malformed answer). The
    reason names the host only: a presigned URL is itself a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(exc: BaseException, host: str) -> str:
    kind = type(exc).__name__
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else ""
    if isinstance(exc, http.client.HTTPException) and not isinstance(exc, OSError):
        text = ""  # IncompleteRead and friends embed bytes of the answer
    return f"{kind}{' ' + text if text else ''} ({host})"


class Body:
    """A response whose body is read with :meth:`readinto`. :meth:`close` hands the
    connection back to the pool when the body was read to its end, else drops it."""

    def __init__(
        self,
        pool: Pool,
        key: Origin,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
    ) -> None:
        self._pool, self._key, self._conn, self._resp = pool, key, conn, resp
        self.status: int = resp.status
        self.headers: Message = resp.headers
        self.host = key[1]
        self._closed = False

    @property
    def length(self) -> int | None:
        """Bytes of body still to come, when the server said (None: chunked or unknown)."""
        return self._resp.length

    def readinto(self, buffer: memoryview) -> int:
        """Fill ``buffer`` as far as the body goes; 0 at its end (or when the server
        closed the connection early: the caller compares with the length it expects)."""
        try:
            return self._resp.readinto(buffer)
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise TransportFailure(describe(exc, self.host)) from None

    def read_small(self, limit: int = 65536) -> bytes:
        """The body of an error answer or a redirect (never a file's content)."""
        try:
            return self._resp.read(limit)
        except (OSError, http.client.HTTPException):
            self._drop()
            return b""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._resp.isclosed() and not self._resp.will_close:
            self._pool.release(self._key, self._conn)  # body fully read: reusable
        else:
            self._drop()

    def _drop(self) -> None:
        self._closed = True
        self._resp.close()
        self._conn.close()


class Pool:
    def __init__(
        self, context: ssl.SSLContext, timeout: float, connect_timeout: float, user_agent: str
    ) -> None:
        self.context = context
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.user_agent = user_agent
        self._idle: dict[Origin, http.client.HTTPConnection] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conn in idle.values():
            conn.close()

    def release(self, key: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            previous = self._idle.pop(key, None)
            self._idle[key] = conn
        if previous is not None:
            previous.close()

    def _new(self, key: Origin) -> http.client.HTTPConnection:
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(
                host, port, timeout=self.connect_timeout, context=self.context
            )
        elif scheme == "http":
            conn = http.client.HTTPConnection(host, port, timeout=self.connect_timeout)
        else:
            raise TransportFailure(f"cannot fetch a {scheme or 'relative'} URL ({host})")
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise TransportFailure(describe(exc, host)) from None
        if conn.sock is not None:  # the connect timeout was for the handshake only
            conn.sock.settimeout(self.timeout)
        return conn

    def request(self, method: str, url: str, headers: dict[str, str]) -> Body:
        """Send one request (no body) and read the answer's status and headers. A kept
        connection the server closed meanwhile is replaced once, silently."""
        key = origin(url)
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            conn = self._idle.pop(key, None)
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._new(key)
            try:
                conn.putrequest(method, target, skip_accept_encoding=True)
                conn.putheader("User-Agent", self.user_agent)
                conn.putheader("Accept-Encoding", "identity")  # md5 of the stored bytes
                for name, value in headers.items():
                    conn.putheader(name, value)
                conn.endheaders()
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                stale = isinstance(
                    exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
                )
                if reused and stale:
                    conn, reused = None, False
                    continue
                raise TransportFailure(describe(exc, key[1])) from None
            return Body(self, key, conn, resp)
