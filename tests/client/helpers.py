"""Test servers for the client: a TCP proxy that records, cuts or corrupts, and a small
HTTP server that records headers (the "third host" a redirect points to); and the real
``fedgate`` command as a job runs it."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Faults:
    """What to do to the answer of the next ``times`` requests containing ``trigger``."""

    trigger: bytes = b"action=content"
    times: int = 0
    cut_after: int | None = None  # close both sides after this many answer bytes
    corrupt_at: int | None = None  # flip the answer byte at this offset
    fired: int = 0


@dataclass
class Proxy:
    upstream: int
    faults: Faults = field(default_factory=Faults)
    seen: bytearray = field(default_factory=bytearray)  # everything clients sent
    port: int = 0
    connections: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop = True
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            state: dict[str, Any] = {"armed": False, "count": 0}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, state: dict[str, Any]) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    self.seen += data
                    f = self.faults
                    if f.trigger in data and f.fired < f.times:
                        f.fired += 1
                        state["armed"], state["count"] = True, 0
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream)

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict[str, Any]) -> None:
        f = self.faults
        try:
            while data := upstream.recv(65536):
                if state["armed"]:
                    start = state["count"]
                    state["count"] += len(data)
                    if f.corrupt_at is not None and start <= f.corrupt_at < state["count"]:
                        i = f.corrupt_at - start
                        data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                    if f.cut_after is not None and state["count"] >= f.cut_after:
                        client.sendall(data[: len(data) - (state["count"] - f.cut_after)])
                        break
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)


def _close(s: socket.socket) -> None:
    with suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()


@contextmanager
def proxy(upstream_port: int, **faults: Any) -> Iterator[Proxy]:
    p = Proxy(upstream_port, Faults(**faults))
    try:
        yield p
    finally:
        p.close()


Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 whose answers are given per path; records every
    request's method, path and headers."""

    routes: dict[str, Handler]
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        recorder = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                recorder.requests.append((self.command, self.path, dict(self.headers.items())))
                route = recorder.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            do_GET = do_PUT = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def send(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", **headers: str) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k.replace("_", "-"), v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


def send_json(h: BaseHTTPRequestHandler, data: Any, status: int = 200) -> None:
    send(h, status, json.dumps(data).encode(), Content_Type="application/json")


def fedgate(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``fedgate`` command (gateway/cli.py dispatching to gateway.client.cli)."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "XDG_RUNTIME_DIR": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
