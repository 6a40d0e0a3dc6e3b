"""The download machinery on its own: the md5 pipeline (pipe.py) and the stdlib
connection pool (fetch.py) against real sockets."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.client.fetch import Pool, TransportFailure
from gateway.client.pipe import pump


class Chunks:
    """A source that hands out ``data`` in uneven reads, then fails if told to."""

    def __init__(self, data: bytes, step: int, fail_after: int | None = None) -> None:
        self.data, self.step, self.fail_after, self.pos = data, step, fail_after, 0

    def readinto(self, buffer: memoryview) -> int:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise TransportFailure("reset (test)")
        n = min(len(buffer), self.step, len(self.data) - self.pos)
        buffer[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def _pump_to(path: Path, source: Chunks, md5: object, **kw: int) -> tuple[int, list[int]]:
    seen: list[int] = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        return pump(source, fd, md5, seen.append, **kw), seen
    finally:
        os.close(fd)


@pytest.mark.parametrize("expected", [None, 5000])
def test_pump_writes_and_hashes_every_byte_in_order(tmp_path: Path, expected: int | None) -> None:
    data = os.urandom(5000)
    md5 = hashlib.md5()
    n, seen = _pump_to(tmp_path / "f", Chunks(data, 333), md5, block=1024, depth=2)
    assert n == 5000 and sum(seen) == 5000 and (tmp_path / "f").read_bytes() == data
    assert md5.hexdigest() == hashlib.md5(data).hexdigest()


def test_pump_stops_with_the_hash_in_step_with_the_file(tmp_path: Path) -> None:
    data = os.urandom(10_000)
    md5 = hashlib.md5()
    with pytest.raises(TransportFailure):
        _pump_to(tmp_path / "f", Chunks(data, 700, fail_after=4200), md5, block=1000, depth=3)
    written = (tmp_path / "f").read_bytes()
    assert written == data[: len(written)] and len(written) == 4200
    assert md5.hexdigest() == hashlib.md5(written).hexdigest()


def test_pump_without_hash(tmp_path: Path) -> None:
    data = os.urandom(3000)
    n, _ = _pump_to(tmp_path / "f", Chunks(data, 1000), None, block=512)
    assert n == 3000 and (tmp_path / "f").read_bytes() == data


@contextmanager
def one_shot_server(answers: int) -> Iterator[tuple[int, list[int]]]:
    """Answers ``answers`` requests per connection with a keep-alive 200, then closes
    the connection without a word (as a server does with an idle connection)."""
    sock = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            accepted.append(1)
            with conn:
                for _ in range(answers):
                    if not conn.recv(65536):
                        break
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield sock.getsockname()[1], accepted
    finally:
        sock.close()


def _get(pool: Pool, url: str) -> bytes:
    body = pool.request("GET", url, {})
    buf = bytearray(16)
    n = body.readinto(memoryview(buf))
    body.close()
    return bytes(buf[:n])


def test_pool_reuses_a_connection_and_replaces_a_stale_one() -> None:
    pool = Pool(httpx.create_ssl_context(), 5, 5, "test")
    with one_shot_server(answers=2) as (port, accepted):
        url = f"http://127.0.0.1:{port}/x"
        assert [_get(pool, url) for _ in range(3)] == [b"hello"] * 3
        # two answers on the first connection, then it was closed under the pool:
        # the third request went out again on a fresh one, without an error
        assert len(accepted) == 2
    pool.close()


def test_pool_reports_the_host_not_the_url() -> None:
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now
    pool = Pool(httpx.create_ssl_context(), 5, 5, "test")
    with pytest.raises(TransportFailure) as err:
        pool.request("GET", f"http://127.0.0.1:{port}/b?X-Amz-Signature=secret", {})
    assert "secret" not in err.value.reason and "127.0.0.1" in err.value.reason


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 with a self-signed certificate."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

    server = HTTPServer(("127.0.0.1", 0), H)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_https_verifies_the_certificate_unless_told_not_to(tls_server: int) -> None:
    url = f"https://127.0.0.1:{tls_server}/f?sig=secret"
    strict = Pool(httpx.create_ssl_context(), 5, 5, "test")
    with pytest.raises(TransportFailure) as err:
        strict.request("GET", url, {})
    assert "SSLCertVerificationError" in err.value.reason and "secret" not in err.value.reason
    insecure = Pool(httpx.create_ssl_context(verify=False), 5, 5, "test")
    assert _get(insecure, url) == b"hello"
    insecure.close()
