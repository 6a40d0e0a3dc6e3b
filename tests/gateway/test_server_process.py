"""What the gateway's server process adds under the app: request bodies gathered into
block-sized messages by our uvicorn protocol (gateway/limits.py) without holding back a slow
client's bytes, and the malloc settings of gateway/memory_tuning.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from starlette.types import Message, Receive, Scope, Send

from bench.common import REPO
from gateway.limits import BODY_BLOCK, BODY_FLUSH, GuardedHttpTools
from tests.server import ServerThread


class BodyRecorder:
    """ASGI app: records each body message (size, arrival time), answers the total."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, float]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        total = 0
        while True:
            message: Message = await receive()
            data = message.get("body", b"")
            total += len(data)
            self.messages.append((len(data), time.monotonic()))
            if not message.get("more_body"):
                break
        answer = str(total).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@contextmanager
def serving(app: BodyRecorder) -> Iterator[int]:
    thread = ServerThread(app, http=GuardedHttpTools, lifespan="off")  # as `fedgate serve`
    port = thread.start()
    try:
        yield port
    finally:
        thread.stop()


def head(size: int) -> bytes:
    return (
        f"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()


def answer(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def test_a_fast_body_reaches_the_app_in_block_sized_messages() -> None:
    app = BodyRecorder()
    size = 16 * BODY_BLOCK
    with serving(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head(size))
        block = os.urandom(64 * 1024)
        for _ in range(size // len(block)):
            sock.sendall(block)
        reply = answer(sock)
    assert reply.endswith(str(size).encode())
    sizes = [n for n, _ in app.messages]
    assert sum(sizes) == size
    # uvicorn alone hands over one message per socket read (~64 KiB on loopback): 128+.
    assert len(sizes) <= 16 + 8, sizes
    assert max(sizes) < 2 * BODY_BLOCK  # reading pauses at a block: memory stays bounded


def test_a_slow_clients_bytes_are_not_held_back() -> None:
    app = BodyRecorder()
    with serving(app) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head(3000))
        for _ in range(3):
            sent = time.monotonic()
            sock.sendall(b"a" * 1000)
            time.sleep(0.3)
            # The piece reached the app long before the next one, and well within a
            # body-idle timeout, although it is far from a full block.
            delivered = [t for n, t in app.messages if n and t >= sent]
            assert delivered and delivered[0] - sent < BODY_FLUSH + 0.2
        reply = answer(sock)
    assert reply.endswith(b"3000")
    assert [n for n, _ in app.messages if n] == [1000, 1000, 1000]


FAULTS = """
import resource, sys
from gateway.memory_tuning import tune_malloc
tune_malloc()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2000):  # two socket-read-sized buffers, allocated and freed per message
    a = bytes(300 * 1024); b = bytes(300 * 1024)
    del a, b
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env: dict[str, str]) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")
def test_malloc_settings_stop_the_page_fault_per_message() -> None:
    tuned = _faults({})
    untuned = _faults({"FEDGATE_MALLOC_TUNING": "0"})
    assert tuned * 10 < untuned, (tuned, untuned)


def test_an_operators_malloc_variable_wins() -> None:
    from gateway.memory_tuning import tune_malloc

    assert tune_malloc({"FEDGATE_MALLOC_TUNING": "0"}) == []
    applied = tune_malloc({"MALLOC_ARENA_MAX": "4"})
    assert "MALLOC_ARENA_MAX" not in applied
    if sys.platform.startswith("linux"):
        assert "MALLOC_MMAP_THRESHOLD_" in applied
