"""iRODS data-object writes with one answer outstanding (used by adapters/irods/write.py).

python-irodsclient's ``write`` is one round trip per block: send DATA_OBJ_WRITE with the
block, wait for the server's answer, return. Between two blocks the server sits idle while
the next one crosses the network, and the gateway while the server stores the last one;
over a WAN that caps an upload at one block per round-trip time. Here the next block is
sent before the previous answer is read: an iRODS agent reads its connection's requests
in order, so the block waits in the TCP buffers and the server goes on at once. Every
answer is still read and checked, in order. A failed write fails the upload, and the
writer then deletes the temporary object, so a gap can never reach the target path.

The block also goes out with ``sendmsg`` beside its header, instead of being copied into
one new buffer with it (python-irodsclient's ``pack``).

Used only where the objects look as python-irodsclient 3.x makes them (``fh.raw.conn``
with a plain TCP ``socket``, ``fh.raw.desc``); TLS connections and anything else keep
the library's own ``write``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

from adapters.base import StorageError


class PipelinedWrites:
    """The writes of one open data object, with at most one answer outstanding."""

    def __init__(self, conn: Any, desc: int) -> None:
        # Imported here, not per block: python-irodsclient is an optional dependency.
        from irods.api_number import api_number
        from irods.message import OpenedDataObjRequest, StringStringMap, iRODSMessage

        self._conn = conn
        self._desc = desc
        self._sock: socket.socket = conn.socket
        self._api = api_number["DATA_OBJ_WRITE_AN"]
        self._header = iRODSMessage.pack_header
        self._request = OpenedDataObjRequest
        self._no_options = StringStringMap
        self._outstanding: int | None = None  # bytes of the write whose answer is unread

    @classmethod
    def attach(cls, fh: Any) -> PipelinedWrites | None:
        """For a handle from ``data_objects.open``, or None: use ``fh.write``."""
        raw = getattr(fh, "raw", None)
        conn = getattr(raw, "conn", None)
        desc = getattr(raw, "desc", None)
        sock = getattr(conn, "socket", None)
        if not isinstance(desc, int) or not isinstance(sock, socket.socket):
            return None
        if isinstance(sock, ssl.SSLSocket) or not hasattr(conn, "recv"):
            return None
        return cls(conn, desc)

    def write(self, data: bytes) -> None:
        """Send ``data`` at the object's current offset, then check the previous answer."""
        request = self._request(
            l1descInx=self._desc,
            len=len(data),
            whence=0,
            oprType=0,
            offset=0,
            bytesWritten=0,
            KeyValPair_PI=self._no_options(),
        )
        body = request.pack().encode()
        head = self._header("RODS_API_REQ", len(body), 0, len(data), self._api)
        self._send([head, body, memoryview(data)])
        previous, self._outstanding = self._outstanding, len(data)
        if previous is not None:
            self._answer(previous)

    def drain(self) -> None:
        """Read the last answer: before the object is closed, which is a request too."""
        previous, self._outstanding = self._outstanding, None
        if previous is not None:
            self._answer(previous)

    def discard(self) -> None:
        """On abort: read the outstanding answer whatever it says, or, if that fails,
        drop the connection (a pooled connection must not hold an unread answer)."""
        try:
            self.drain()
        except Exception:
            self._drop()

    def _send(self, parts: list[bytes | memoryview]) -> None:
        views = [memoryview(p) for p in parts]
        try:
            while views:
                sent = self._sock.sendmsg(views)
                while views and sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                if views:
                    views[0] = views[0][sent:]
        except OSError as exc:
            from irods.exception import NetworkException

            self._outstanding = None
            self._drop()
            raise NetworkException("Unable to send message") from exc

    def _answer(self, expected: int) -> None:
        written = self._conn.recv().int_info  # raises the iRODS error of a failed write
        if written != expected:
            raise StorageError(f"iRODS stored {written} of {expected} bytes")

    def _drop(self) -> None:
        # What python-irodsclient does on a send failure; nothing to do if already gone.
        with contextlib.suppress(Exception):
            self._conn.release(True)
