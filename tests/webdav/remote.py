"""A small HTTP server on loopback playing the other side of a third-party copy, with the
faults a real peer shows: a wrong digest, a connection cut mid-body, a slow body. It
records what it was sent (headers, PUT bodies) so tests can check what left the gateway."""

from __future__ import annotations

import http.server
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Remote:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    wrong_digest: bool = False
    cut_after: int | None = None  # bytes of a GET body before the connection is dropped
    slow: float = 0.0  # seconds between 64 KiB pieces of a GET body
    release: threading.Event = field(default_factory=threading.Event)

    def digest(self, data: bytes) -> str:
        value = 0 if self.wrong_digest else zlib.adler32(data) & 0xFFFFFFFF
        return f"adler32={value:08x}"


@contextmanager
def serving_remote() -> Iterator[Remote]:
    remote = Remote()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self) -> None:
            # Header names lowercased: HTTP's are case-insensitive.
            headers = {k.lower(): v for k, v in self.headers.items()}
            remote.requests.append((self.command, self.path, headers))

        def do_GET(self) -> None:
            self._record()
            data = remote.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            if "want-digest" in {k.lower() for k in self.headers}:
                self.send_header("Digest", remote.digest(data))
            self.end_headers()
            sent = 0
            for i in range(0, len(data), 65536):
                piece = data[i : i + 65536]
                if remote.cut_after is not None and sent + len(piece) > remote.cut_after:
                    self.wfile.write(piece[: remote.cut_after - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(piece)
                sent += len(piece)
                if remote.slow:
                    self.wfile.flush()
                    remote.release.wait(remote.slow)

        def do_HEAD(self) -> None:
            self._record()
            data = remote.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Digest", remote.digest(data))
            self.end_headers()

        def do_PUT(self) -> None:
            self._record()
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path.startswith("/readonly/"):
                self.send_error(403)
                return
            remote.files[self.path] = body
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    remote.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield remote
    finally:
        remote.release.set()
        server.shutdown()
        server.server_close()
