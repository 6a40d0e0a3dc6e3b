"""Download bodies moved by the kernel from the backend's socket to the client's
(gateway/datapath/socket_splice.py, adapters/response_socket.py).

The loop is tested on real TCP sockets, and the whole path through a real uvicorn
running our protocol class, with a real urllib3 response from a small HTTP server
standing in for an HTTP storage (S3 through SeaweedFS takes the same path in
tests/gateway/s3/test_s3_gateway.py)."""

from __future__ import annotations

import contextlib
import http.server
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import urllib3

from adapters.base import BackendTimeout, BackendUnavailable
from adapters.posix import PosixStorage
from adapters.response_socket import ResponseStream, SocketBody
from gateway.datapath import socket_splice
from gateway.datapath.socket_thread import ClientGone
from gateway.datapath.uvicorn_seam import GuardedHttpTools
from tests.gateway.datapath_helpers import assert_cut, record_splices
from tests.server import Running, local_settings, running

MiB = 1024 * 1024


# --- the loop, on real sockets ------------------------------------------------------


def _pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of a loopback TCP connection (splice needs a real TCP socket)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def _sender(sock: socket.socket, data: bytes) -> None:
    def run() -> None:
        with contextlib.suppress(OSError):  # the test may close the other end first
            sock.sendall(data)

    threading.Thread(target=run, daemon=True).start()


def _reader(sock: socket.socket, into: bytearray) -> threading.Thread:
    def run() -> None:
        while data := sock.recv(1 << 20):
            into.extend(data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _splice(src: socket.socket, dst: socket.socket, length: int, **kw: Any) -> list[int]:
    src.setblocking(False)
    sent: list[int] = []
    socket_splice.splice_body(
        SocketBody(b"", src, length, kw.pop("timeout", 5.0)),
        dst,
        kw.pop("send_idle", 5.0),
        kw.pop("stop", threading.Event()),
        sent.append,
    )
    return sent


def test_the_bytes_arrive_exact() -> None:
    data = os.urandom(9 * MiB + 123)
    backend, src = _pair()
    dst, client = _pair()
    _sender(backend, data)
    got = bytearray()
    reader = _reader(client, got)
    sent = _splice(src, dst, len(data))
    dst.close()
    reader.join(10)
    assert bytes(got) == data
    assert sum(sent) == len(data)
    assert max(sent) > 64 * 1024  # batched: not a write per packet


def test_a_trickling_backend_reaches_the_client_in_batches() -> None:
    """Half a pipe at a time, not a write per packet (see _move's docstring)."""
    backend, src = _pair()
    dst, client = _pair()

    def trickle() -> None:
        for _ in range(256):
            backend.sendall(b"y" * 16 * 1024)
            time.sleep(0.0002)

    threading.Thread(target=trickle, daemon=True).start()
    got = bytearray()
    _reader(client, got)
    sent = _splice(src, dst, 4 * MiB)
    assert sum(sent) == 4 * MiB
    assert len(sent) < 32, f"{len(sent)} writes to the client for 4 MiB"


def test_a_backend_that_hangs_up_early_is_an_error() -> None:
    backend, src = _pair()
    dst, client = _pair()
    backend.sendall(b"x" * 1000)
    backend.close()
    _reader(client, bytearray())
    with pytest.raises(BackendUnavailable, match="stopped sending"):
        _splice(src, dst, 5000)


def test_a_silent_backend_times_out() -> None:
    backend, src = _pair()
    dst, client = _pair()
    backend.sendall(b"x" * 1000)
    _reader(client, bytearray())
    started = time.monotonic()
    with pytest.raises(BackendTimeout):
        _splice(src, dst, 5000, timeout=0.5)
    assert time.monotonic() - started < 3
    backend.close()


def test_a_client_that_takes_nothing_is_cut_off() -> None:
    backend, src = _pair()
    dst, client = _pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    _sender(backend, b"x" * 64 * MiB)
    started = time.monotonic()
    with pytest.raises(ClientGone, match="took no data"):
        _splice(src, dst, 64 * MiB, send_idle=0.5)
    assert time.monotonic() - started < 5
    backend.close()
    src.close()  # wakes the sender thread


def test_a_client_that_resets_is_noticed_while_the_backend_is_silent() -> None:
    """A reset, not a FIN: a client may half-close after its request and still read.
    (A client gone with a FIN is seen by the server protocol, which sets ``stop``.)"""
    backend, src = _pair()
    dst, client = _pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    started = time.monotonic()
    with pytest.raises(ClientGone):
        _splice(src, dst, 5000, timeout=30)
    assert time.monotonic() - started < 5  # not the backend's 30 s
    backend.close()


def test_stop_ends_the_move() -> None:
    backend, src = _pair()
    dst, client = _pair()
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(ClientGone, match="cancelled"):
        _splice(src, dst, 5000, stop=stop, timeout=30)
    backend.close()
    client.close()


# --- the whole path -----------------------------------------------------------------


class _Origin(http.server.BaseHTTPRequestHandler):
    """An HTTP storage: serves ``body``, or its first half and then hangs up."""

    body: ClassVar[bytes] = b""
    short: ClassVar[bool] = False
    finished: ClassVar[int] = 0  # answers that ended with the client gone
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        try:
            self.wfile.write(self.body[: len(self.body) // 2] if self.short else self.body)
            self.wfile.flush()
        except OSError:
            type(self).finished += 1
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def origin(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Local-mount reads come from the origin server as urllib3 responses; yields the
    bodies handed to the splice loop (their lengths)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    pool = urllib3.PoolManager()
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    def open_read(self: PosixStorage, path: str, start: int = 0, end: int | None = None) -> Any:
        response = pool.request("GET", url, preload_content=False)

        def chunks() -> Iterator[bytes]:
            while data := response.read(MiB):
                yield data

        return ResponseStream(chunks(), response, len(_Origin.body), response.close)

    monkeypatch.setattr(PosixStorage, "open_read", open_read)
    _Origin.short = False
    _Origin.finished = 0
    yield record_splices(monkeypatch)
    server.shutdown()
    server.server_close()


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path, send_idle_timeout=2), http=GuardedHttpTools) as r:
        yield r


def _serve(gw: Running, data: bytes) -> None:
    _Origin.body = data
    (gw.data / "f.bin").write_bytes(data)  # for the stat that precedes the read


def test_a_download_is_spliced_and_exact(gw: Running, origin: list[int]) -> None:
    data = os.urandom(16 * MiB + 7)
    _serve(gw, data)
    with gw.client() as c:
        first = c.get("/path/local/f.bin?action=content")
        second = c.get("/path/local/f.bin?action=content")  # same connection: keep-alive
    assert first.content == data
    assert second.content == data
    assert origin == [len(data), len(data)]


def test_a_storage_that_stops_mid_body_cuts_the_client(gw: Running, origin: list[int]) -> None:
    data = os.urandom(16 * MiB)
    _serve(gw, data)
    _Origin.short = True
    assert_cut(gw, "/path/local/f.bin?action=content", data)
    assert origin == [len(data)]


def test_splice_can_be_turned_off(tmp_path: Path, origin: list[int]) -> None:
    settings = local_settings(tmp_path, splice_bodies=False)
    with running(settings, http=GuardedHttpTools) as gw:
        data = os.urandom(4 * MiB)
        _serve(gw, data)
        with gw.client() as c:
            assert c.get("/path/local/f.bin?action=content").content == data
    assert origin == []


def test_tls_and_coded_bodies_keep_the_copying_path() -> None:
    class Fake:
        _fp_bytes_read = 0
        headers = {"content-encoding": "gzip"}

    assert ResponseStream(iter(()), Fake(), 10, lambda: None).take_socket() is None


def test_a_client_that_leaves_mid_body_frees_the_transfer(gw: Running, origin: list[int]) -> None:
    """The client hangs up after a few MiB: the gateway stops moving bytes, closes the
    storage's connection (the origin's write fails instead of waiting), and serves on."""
    data = os.urandom(64 * MiB)
    _serve(gw, data)
    sock = socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])))
    sock.sendall(
        f"GET /rest/path/local/f.bin?action=content HTTP/1.1\r\nHost: t\r\n"
        f"apikey: {gw.key}\r\n\r\n".encode()
    )
    got = 0
    while got < 4 * MiB:
        got += len(sock.recv(1 << 20))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    deadline = time.monotonic() + 10
    while _Origin.finished < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _Origin.finished == 1, "the storage's connection was left open"
    with gw.client() as c:
        assert c.get("/path/local/f.bin?action=content").content == data
    assert origin == [len(data), len(data)]
