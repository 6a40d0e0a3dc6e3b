"""Slow and stuck clients against a real ``fedgate serve`` with short limits: a trickled
request head, a trickled or stalled body, a reader that takes one byte a second, and 200
idle connections. None may hold the gateway; none may leave anything written."""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from adapters.posix import STAGING
from bench.common import Fedgate, fedgate

LIMITS = {
    "FEDGATE_KEEP_ALIVE_TIMEOUT": "2",
    "FEDGATE_BODY_IDLE_TIMEOUT": "2",
    "FEDGATE_BODY_MIN_RATE": "1024",
    "FEDGATE_SEND_IDLE_TIMEOUT": "3",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fedgate, Path]]:
    data = tmp_path_factory.mktemp("slow") / "data"
    data.mkdir()
    with fedgate({"local": {"type": "posix", "root": str(data)}}, extra_env=LIMITS) as fg:
        yield fg, data


def _addr(fg: Fedgate) -> tuple[str, int]:
    host, port = fg.url.removeprefix("http://").split("/")[0].split(":")
    return host, int(port)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _response_fds(fg: Fedgate) -> int:
    """Open descriptors other than the state database's: a request served by a thread
    the pool has not used before opens that thread's SQLite connection (state.db and its
    WAL), which is kept for the thread's next requests, not leaked."""
    state = str(fg.state / "state.db")
    return sum(1 for t in _fd_targets(fg.pid) if not t.startswith(state))


def _fd_targets(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return sorted(out)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (None if it is still open), while we
    send ``trickle`` one byte a second."""
    start = time.monotonic()
    sock.settimeout(1.0)
    for i in range(int(seconds)):
        try:
            if trickle:
                sock.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
            if sock.recv(65536) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def _staging(data: Path) -> list[Path]:
    return [p for p in (data / STAGING).rglob("*") if p.is_file()]


def test_silent_connection_is_closed(served: tuple[Fedgate, Path]) -> None:
    fg, _ = served
    with socket.create_connection(_addr(fg)) as s:
        took = _closed_within(s, 10)
    assert took is not None and took < 5, "a connection that sends nothing stays open"


def test_trickled_request_head_is_cut_off(served: tuple[Fedgate, Path]) -> None:
    fg, _ = served
    with socket.create_connection(_addr(fg)) as s:
        s.sendall(b"GET /rest/platform HTTP/1.1\r\nHost: x\r\n")
        took = _closed_within(s, 12, trickle=b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n")
    assert took is not None and took < 6, "a header sent a byte a second holds the socket"


@pytest.mark.parametrize("per_second", [0, 1], ids=["stalled", "one-byte-a-second"])
def test_slow_upload_is_refused_and_writes_nothing(
    served: tuple[Fedgate, Path], per_second: int
) -> None:
    fg, data = served
    (data / "keep").write_bytes(b"previous version")
    head = (
        f"PUT /rest/path/local/keep HTTP/1.1\r\nHost: x\r\napikey: {fg.key}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    start = time.monotonic()
    answer = b""
    with socket.create_connection(_addr(fg)) as s:
        s.sendall(head + b"x" * 10)
        s.settimeout(1.0)
        while time.monotonic() - start < 15 and b"40801" not in answer:
            try:
                if per_second:
                    s.sendall(b"x")
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
            except TimeoutError:
                continue
            except OSError:
                break
    took = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"errorCode":40801' in answer
    assert took < 8, f"cut off only after {took:.1f} s"
    assert (data / "keep").read_bytes() == b"previous version"
    time.sleep(0.2)
    assert _staging(data) == []


def _tcp_state(sock: socket.socket) -> int:
    # First byte of struct tcp_info: 1 = ESTABLISHED; 7 CLOSE (reset), 8 CLOSE_WAIT (FIN).
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def test_reader_that_takes_nothing_is_cut_off(served: tuple[Fedgate, Path]) -> None:
    fg, data = served
    size = 64 * 1024 * 1024
    (data / "big").write_bytes(os.urandom(1024 * 1024) * 64)
    # Warm up the same path (a short ranged read) so pools are at their working size.
    r = httpx.get(
        fg.url + "/path/local/big?action=content",
        headers={"apikey": fg.key, "Range": "bytes=0-99"},
    )
    assert r.status_code == 206
    time.sleep(0.5)
    before = _response_fds(fg)
    before_targets = _fd_targets(fg.pid)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(_addr(fg))
        s.sendall(
            f"GET /rest/path/local/big?action=content HTTP/1.1\r\nHost: x\r\n"
            f"apikey: {fg.key}\r\n\r\n".encode()
        )
        got, start = 0, time.monotonic()
        # What is already in our receive buffer stays readable after the server ends the
        # connection, so watch the TCP state rather than wait for recv() to fail.
        while _tcp_state(s) == 1 and time.monotonic() - start < 20:
            got += len(s.recv(1))  # one byte a second
            time.sleep(1.0)
        took = time.monotonic() - start
        state = _tcp_state(s)
    assert state != 1, "a reader taking one byte a second holds the response forever"
    assert took < 12, f"cut off only after {took:.1f} s"
    assert got < size
    deadline = time.monotonic() + 5
    while _response_fds(fg) > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _response_fds(fg) <= before, (
        "the cut response's socket or file was not released",
        Counter(_fd_targets(fg.pid)) - Counter(before_targets),
    )


def test_idle_connections_do_not_starve_other_clients(served: tuple[Fedgate, Path]) -> None:
    fg, data = served
    (data / "small").write_bytes(b"s" * 1000)
    idle = [socket.create_connection(_addr(fg)) for _ in range(200)]
    try:
        for s in idle[::2]:  # half silent, half with a started request head
            s.sendall(b"GET /rest/platform HTTP/1.1\r\n")

        def one(_: int) -> float:
            t = time.monotonic()
            r = httpx.get(
                fg.url + "/path/local/small?action=content",
                headers={"apikey": fg.key},
                timeout=5,
            )
            assert r.status_code == 200 and r.content == b"s" * 1000
            return time.monotonic() - t

        with ThreadPoolExecutor(8) as pool:
            times = sorted(pool.map(one, range(100)))
        # Every request is served; the bound is loose because CI machines are shared.
        assert times[98] < 2.0, f"p99 {times[98]:.3f} s with 200 idle connections"
    finally:
        for s in idle:
            s.close()


def test_client_that_hangs_up_mid_download_releases_the_file(
    served: tuple[Fedgate, Path],
) -> None:
    fg, data = served
    (data / "big2").write_bytes(os.urandom(1024 * 1024) * 32)
    url = fg.url + "/path/local/big2?action=content"
    with httpx.Client(headers={"apikey": fg.key}) as c:
        assert c.get(url, headers={"Range": "bytes=0-9"}).status_code == 206
        time.sleep(0.5)
        before = _fds(fg.pid)
        for _ in range(3):
            with c.stream("GET", url) as r:
                next(r.iter_raw(1024 * 1024))
            # leaving the block closes our connection with most of the body unsent
    deadline = time.monotonic() + 3
    while _fds(fg.pid) > before - 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    leaked = [t for t in _fd_targets(fg.pid) if t.endswith("/big2")]
    assert leaked == [], "an interrupted download keeps its file open"
