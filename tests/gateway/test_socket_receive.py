"""Upload bodies read straight from the client's socket (gateway/datapath/socket_receive.py), on a
real uvicorn running our protocol class, as `fedgate serve` does: byte-exact, keep-alive
and pipelining go on afterwards, and a body that is cut or stalls writes nothing."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.datapath import transfer
from tests.events import request_log
from tests.gateway.datapath_helpers import read_response
from tests.gateway.helpers import scrape, value
from tests.server import Running, local_settings, running

MiB = 1024 * 1024


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    settings = local_settings(tmp_path, body_idle_timeout=1, body_min_rate=1024)
    with running(settings) as r:
        yield r


class Readers(list[int]):
    """The bytes left to read of each body read past ASGI; ``started`` is set once the
    first such read has taken the socket over (a definite event to wait for)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> Readers:
    """Records each body read past ASGI (the bytes left to read), so a test knows which
    path ran."""
    seen = Readers()
    real: Callable[..., Any] = transfer.run_reader

    async def recording(taken: Any, *args: Any) -> int:
        seen.append(taken.remaining)
        seen.started.set()
        return int(await real(taken, *args))

    monkeypatch.setattr(transfer, "run_reader", recording)
    return seen


def files(root: Path) -> list[str]:
    """Every file under the mount's folder, the posix adapter's staging folder included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def connect(gw: Running) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(gw.url.rsplit(":", 1)[1])), timeout=20)


def put_head(gw: Running, name: str, length: int, extra: str = "") -> bytes:
    return (
        f"PUT /rest/path/local/{name} HTTP/1.1\r\nHost: t\r\napikey: {gw.key}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def get_head(gw: Running, name: str) -> bytes:
    return (
        f"GET /rest/path/local/{name}?action=content HTTP/1.1\r\nHost: t\r\n"
        f"apikey: {gw.key}\r\n\r\n"
    ).encode()


def test_body_is_exact_and_the_connection_goes_on(gw: Running, readers: Readers) -> None:
    body = os.urandom(5 * MiB + 77)
    (gw.data / "small.txt").write_bytes(b"small")
    with connect(gw) as sock:
        buffered = bytearray()
        sock.sendall(put_head(gw, "up.bin", len(body)) + body[:1000])
        # Some of the body reached the parser with the head; the rest is sent once the
        # thread has taken the socket over.
        assert readers.started.wait(30)
        sock.sendall(body[1000:])
        status, _, answer = read_response(sock, buffered)
        assert status.startswith(b"HTTP/1.1 201"), answer
        # The next request on the same connection is parsed from its first byte.
        sock.sendall(get_head(gw, "small.txt"))
        assert read_response(sock, buffered)[2] == b"small"
    assert (gw.data / "up.bin").read_bytes() == body
    assert len(readers) == 1 and readers[0] < len(body)


def test_a_pipelined_request_behind_the_body_is_answered(gw: Running, readers: Readers) -> None:
    body = os.urandom(3 * MiB)
    (gw.data / "small.txt").write_bytes(b"small")
    with connect(gw) as sock:
        sock.sendall(put_head(gw, "up.bin", len(body)) + body + get_head(gw, "small.txt"))
        buffered = bytearray()
        assert read_response(sock, buffered)[0].startswith(b"HTTP/1.1 201")
        assert read_response(sock, buffered)[2] == b"small"
    assert (gw.data / "up.bin").read_bytes() == body
    assert len(readers) == 1


def test_expect_100_continue_is_answered(gw: Running, readers: Readers) -> None:
    body = os.urandom(2 * MiB)
    with connect(gw) as sock:
        sock.sendall(put_head(gw, "up.bin", len(body), "Expect: 100-continue\r\n"))
        interim = sock.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        buffered = bytearray(interim.partition(b"\r\n\r\n")[2])
        assert read_response(sock, buffered)[0].startswith(b"HTTP/1.1 201")
    assert (gw.data / "up.bin").read_bytes() == body
    assert readers == [len(body)]


def test_a_cut_body_writes_nothing_and_keeps_the_old_file(gw: Running, readers: Readers) -> None:
    (gw.data / "keep.bin").write_bytes(b"old")
    with request_log() as log:
        with connect(gw) as sock:
            sock.sendall(put_head(gw, "keep.bin", 8 * MiB) + os.urandom(3 * MiB))
            assert readers.started.wait(30)  # the upload is under way: now cut it
        log.wait_for("PUT", "/rest/path/local/keep.bin")  # and the gateway is done with it
    assert files(gw.data) == ["keep.bin"]  # the aborted upload's temporary is gone too
    assert (gw.data / "keep.bin").read_bytes() == b"old"
    assert len(readers) == 1  # read past ASGI


def test_a_stalled_body_gets_408_and_the_connection_is_closed(
    gw: Running, readers: Readers
) -> None:
    with connect(gw) as sock:
        sock.sendall(put_head(gw, "up.bin", 8 * MiB) + os.urandom(2 * MiB))
        buffered = bytearray()
        status, _, answer = read_response(sock, buffered)  # idle limit: 1 s
        assert status.startswith(b"HTTP/1.1 408"), answer
        error = json.loads(answer)
        assert error["errorCode"] // 100 == 408 and "nothing was written" in error["errorMessage"]
        sock.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # closed: the rest was never read
            assert sock.recv(1) == b""
    assert not (gw.data / "up.bin").exists()
    assert len(readers) == 1  # read past ASGI, whatever the parser had taken first


def test_socket_bodies_can_be_turned_off(tmp_path: Path, readers: Readers) -> None:
    with running(local_settings(tmp_path, socket_bodies=False)) as gw, connect(gw) as sock:
        body = os.urandom(2 * MiB)
        sock.sendall(put_head(gw, "up.bin", len(body)) + body)
        assert read_response(sock, bytearray())[0].startswith(b"HTTP/1.1 201")
        assert (gw.data / "up.bin").read_bytes() == body
    assert readers == []


def test_a_writer_that_fails_mid_body_commits_nothing(
    gw: Running, readers: Readers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's thread (WriteBehind) fails on its third block: the answer is an
    error, nothing appears, and no upload thread is left behind."""
    from adapters.base import StorageError
    from adapters.posix import PosixWriter

    real = PosixWriter.write
    calls: list[int] = []

    def failing(self: PosixWriter, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 3:
            raise StorageError("disk went away")
        real(self, data)

    monkeypatch.setattr(PosixWriter, "write", failing)
    with connect(gw) as sock:
        sock.sendall(put_head(gw, "up.bin", 16 * MiB))
        with contextlib.suppress(OSError):  # the gateway may stop reading and close
            sock.sendall(os.urandom(16 * MiB))
        status, _, answer = read_response(sock, bytearray())
    assert status.split()[1] in (b"500", b"502", b"503", b"507"), answer
    assert "errorCode" in json.loads(answer)
    assert files(gw.data) == []
    assert len(readers) == 1 and len(calls) == 3
    deadline = time.monotonic() + 5
    while any(t.name.startswith("fedgate-upload") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "an upload thread outlived its request"
        time.sleep(0.05)


def test_request_bytes_are_counted_whole(gw: Running, readers: Readers) -> None:
    """Bytes the parser had gathered before the thread took over never went through ASGI:
    the metric counts them too."""
    body = os.urandom(3 * MiB)
    before = scrape(gw.url)
    with connect(gw) as sock:
        sock.sendall(put_head(gw, "up.bin", len(body)) + body[:5000])
        assert readers.started.wait(30)  # the first bytes reached the parser before
        sock.sendall(body[5000:])
        assert read_response(sock, bytearray())[0].startswith(b"HTTP/1.1 201")
    after = scrape(gw.url)
    name = "fedgate_http_request_bytes_total"
    assert value(after, name, mount="local") - value(before, name, mount="local") == len(body)
    assert len(readers) == 1 and readers[0] < len(body)
