"""Download bodies written straight to the client's socket (gateway/datapath/socket_send.py), on a
real uvicorn running our protocol class, as `fedgate serve` does: byte-exact, keep-alive
goes on afterwards, and a body that fails, overruns or stalls is cut, never complete."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.base import StorageError
from adapters.posix import PosixStorage
from gateway.datapath import socket_send, transfer
from gateway.datapath.uvicorn_seam import GuardedHttpTools
from tests.events import request_log
from tests.gateway.datapath_helpers import assert_cut, read_response
from tests.gateway.helpers import scrape, value
from tests.server import Running, local_settings, running

MiB = 1024 * 1024


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path, send_idle_timeout=2), http=GuardedHttpTools) as r:
        yield r


@pytest.fixture
def writers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each body written past ASGI (its length), so a test knows which path ran."""
    seen: list[int] = []

    class Recording(transfer.BodyWriter):
        def __init__(
            self,
            chunks: Iterator[bytes],
            sock: socket.socket,
            expected: int,
            prefetch: int,
            splice: bool = True,
        ) -> None:
            seen.append(expected)
            super().__init__(chunks, sock, expected, prefetch, splice=splice)

    monkeypatch.setattr(transfer, "BodyWriter", Recording)
    return seen


def put(gw: Running, name: str, data: bytes) -> None:
    (gw.data / name).write_bytes(data)


def request(sock: socket.socket, target: str, key: str, extra: str = "") -> None:
    head = f"GET /rest/path/local/{target} HTTP/1.1\r\nHost: t\r\napikey: {key}\r\n"
    sock.sendall(f"{head}{extra}\r\n".encode())


def test_bodies_are_exact_and_the_connection_stays_usable(gw: Running, writers: list[int]) -> None:
    big = os.urandom(5 * MiB + 123)
    put(gw, "big.bin", big)
    put(gw, "small.txt", b"small")
    with socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))) as sock:
        buffered = bytearray()
        request(sock, "big.bin?action=content", gw.key)
        status, headers, body = read_response(sock, buffered)
        assert status.startswith(b"HTTP/1.1 200") and body == big
        # The same connection: a range through the socket, then a small body via ASGI.
        request(sock, "big.bin?action=content", gw.key, "Range: bytes=1000-3000999\r\n")
        status, headers, body = read_response(sock, buffered)
        assert status.startswith(b"HTTP/1.1 206")
        assert headers["content-range"] == f"bytes 1000-3000999/{len(big)}"
        assert body == big[1000:3001000]
        request(sock, "small.txt?action=content", gw.key)
        assert read_response(sock, buffered)[2] == b"small"
    assert writers == [len(big), 3_000_000]  # the small body went through ASGI


def test_head_sends_no_body(gw: Running, writers: list[int]) -> None:
    put(gw, "big.bin", os.urandom(2 * MiB))
    with gw.client() as c:
        r = c.head("/path/local/big.bin?action=content")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str(2 * MiB)
        assert c.get("/path/local/big.bin?action=content").content[:4]  # same connection
    assert writers == [2 * MiB]


def test_response_bytes_are_counted(gw: Running, writers: list[int]) -> None:
    put(gw, "big.bin", os.urandom(3 * MiB))
    before = scrape(gw.url)
    with gw.client() as c:
        assert len(c.get("/path/local/big.bin?action=content").content) == 3 * MiB
    after = scrape(gw.url)
    name = "fedgate_http_response_bytes_total"
    grown = value(after, name, mount="local") - value(before, name, mount="local")
    assert grown >= 3 * MiB  # plus the /metrics scrape's own bytes are not under "local"
    assert grown < 3 * MiB + 4096
    assert writers == [3 * MiB]


def _broken_read(monkeypatch: pytest.MonkeyPatch, extra: bool) -> None:
    real = PosixStorage.open_read

    def open_read(self: PosixStorage, path: str, start: int = 0, end: int | None = None):  # type: ignore[no-untyped-def]
        def chunks() -> Iterator[bytes]:
            inner = real(self, path, start, end)
            yield next(inner)
            yield next(inner)
            if extra:  # the file grew since its stat: the rest and more, in one chunk
                yield b"".join(inner) + b"one byte too many"
            else:
                raise StorageError("backend went away")

        return chunks()

    monkeypatch.setattr(PosixStorage, "open_read", open_read)


@pytest.mark.parametrize("extra", [False, True], ids=["backend-fails", "backend-overruns"])
def test_a_body_that_goes_wrong_is_cut(
    gw: Running, writers: list[int], monkeypatch: pytest.MonkeyPatch, extra: bool
) -> None:
    data = os.urandom(8 * MiB)
    put(gw, "big.bin", data)
    _broken_read(monkeypatch, extra)
    assert_cut(gw, "/path/local/big.bin?action=content", data)
    assert writers == [len(data)]
    # The gateway is fine afterwards.
    monkeypatch.undo()
    with gw.client() as c:
        assert c.get("/path/local/big.bin?action=content").content == data


def test_a_reader_that_takes_nothing_is_cut_off(gw: Running, writers: list[int]) -> None:
    put(gw, "big.bin", os.urandom(64 * MiB))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])))
    with sock, request_log() as log:
        request(sock, "big.bin?action=content", gw.key)
        # The gateway gives up after send_idle_timeout (2 s) without progress: wait for
        # the request to be over, then take what was sent.
        log.wait_for("GET", "/rest/path/local/big.bin")
        received = 0
        sock.settimeout(10)
        try:
            while data := sock.recv(1 << 20):
                received += len(data)
        except ConnectionResetError:
            pass
    assert received < 64 * MiB
    assert writers == [64 * MiB]


def test_socket_send_can_be_turned_off(tmp_path: Path, writers: list[int]) -> None:
    settings = local_settings(tmp_path, socket_bodies=False)
    with running(settings, http=GuardedHttpTools) as gw:
        data = os.urandom(2 * MiB)
        put(gw, "big.bin", data)
        with gw.client() as c:
            assert c.get("/path/local/big.bin?action=content").content == data
    assert writers == []  # every body went through ASGI


@pytest.mark.parametrize("extra", [False, True], ids=["exact", "backend-fails"])
def test_a_storage_that_asks_for_read_ahead_gets_it(
    gw: Running, writers: list[int], monkeypatch: pytest.MonkeyPatch, extra: bool
) -> None:
    """gfal (root://) and iRODS answer one request per chunk and ask for a second thread
    to read ahead: same bytes, same cut on failure, and the thread is gone afterwards."""
    threads: list[int] = []
    real_init = socket_send.Prefetch.__init__

    def counting(self: socket_send.Prefetch, chunks: Iterator[bytes], depth: int) -> None:
        threads.append(depth)
        real_init(self, chunks, depth)

    monkeypatch.setattr(socket_send.Prefetch, "__init__", counting)
    asks = dataclasses.replace(PosixStorage.capabilities, read_ahead=1)
    monkeypatch.setattr(PosixStorage, "capabilities", asks)
    data = os.urandom(6 * MiB)
    put(gw, "big.bin", data)
    if extra:
        _broken_read(monkeypatch, extra=False)
    with gw.client() as c:
        if extra:
            with pytest.raises(httpx.HTTPError):
                c.get("/path/local/big.bin?action=content")
        else:
            assert c.get("/path/local/big.bin?action=content").content == data
    assert threads == [1] and writers == [len(data)]
    deadline = time.monotonic() + 5
    while any(t.name == "fedgate-prefetch" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the read-ahead thread outlived its response"
        time.sleep(0.05)


def test_a_failure_before_the_first_byte_still_closes_the_connection(
    gw: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The duplicate socket alone would keep the connection open after uvicorn closed
    its own descriptor: the client would wait for the body forever."""

    def fail(*args: object) -> None:
        raise RuntimeError("broken before the first byte")

    monkeypatch.setattr(transfer, "BodyWriter", fail)
    put(gw, "big.bin", os.urandom(2 * MiB))
    client = httpx.Client(base_url=gw.api, headers={"apikey": gw.key}, timeout=5)
    with client as c, pytest.raises(httpx.HTTPError) as caught:
        c.get("/path/local/big.bin?action=content")
    assert not isinstance(caught.value, httpx.TimeoutException)


def test_a_reader_that_trickles_is_cut_off(gw: Running, writers: list[int]) -> None:
    """A reader taking a few KiB a second never leaves the socket idle, but each chunk
    must be taken within send_idle_timeout (2 s here), as through ASGI."""
    put(gw, "big.bin", os.urandom(64 * MiB))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])))
    received, cut = 0, False
    started = time.monotonic()
    with sock:
        request(sock, "big.bin?action=content", gw.key)
        sock.settimeout(5)
        while time.monotonic() - started < 20:
            try:
                data = sock.recv(4096)
            except (ConnectionResetError, TimeoutError):
                cut = True
                break
            if not data:
                cut = True
                break
            received += len(data)
            time.sleep(0.05)  # ~80 KiB/s: a 1 MiB chunk takes 12 s
    assert cut and received < 64 * MiB
    assert time.monotonic() - started < 15
    assert writers == [64 * MiB]


def test_a_uvicorn_whose_request_cycle_differs_gets_the_asgi_path(
    gw: Running, writers: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.datapath import uvicorn_seam

    monkeypatch.setattr(uvicorn_seam, "_fits", [False])  # as if a field were missing
    data = os.urandom(2 * MiB)
    put(gw, "big.bin", data)
    with gw.client() as c:
        assert c.get("/path/local/big.bin?action=content").content == data
        r = c.put("/path/local/up.bin", content=data)
        assert r.status_code == 201, r.text
    assert writers == []
    assert (gw.data / "up.bin").read_bytes() == data
    monkeypatch.setattr(uvicorn_seam, "_fits", [])  # the check itself, on a cycle without fields
    assert uvicorn_seam._seam_fits(object()) is False
