"""Helpers the data-path tests share (gateway/datapath/): one response read off a
keep-alive socket, a download that must break off, and the bodies handed to the splice
loop."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from adapters.response_socket import SocketBody
from gateway.datapath import socket_send, socket_splice
from tests.server import Running


def read_response(sock: socket.socket, buffered: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One response off a keep-alive connection: (status line, headers, body)."""
    while b"\r\n\r\n" not in buffered:
        data = sock.recv(65536)
        assert data, "connection closed before the response head"
        buffered += data
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    body = bytearray(rest)
    while len(body) < length:
        data = sock.recv(1 << 20)
        assert data, f"connection closed after {len(body)} of {length} body bytes"
        body += data
    buffered[:] = body[length:]
    return lines[0].encode(), headers, bytes(body[:length])


def assert_cut(gw: Running, path: str, data: bytes) -> None:
    """A 200 whose body breaks off: a prefix of ``data``, then a transport error."""
    received = bytearray()
    with gw.client() as c, c.stream("GET", path) as r:
        assert r.status_code == 200
        with pytest.raises(httpx.HTTPError):
            for chunk in r.iter_raw():
                received += chunk
    assert len(received) < len(data)
    assert bytes(received) == data[: len(received)]


def record_splices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of each body handed to the splice loop from now on."""
    spliced: list[int] = []
    real = socket_splice.splice_body

    def recording(body: SocketBody, *args: Any) -> None:
        spliced.append(len(body.head) + body.length)
        real(body, *args)

    monkeypatch.setattr(socket_send, "splice_body", recording)
    return spliced
