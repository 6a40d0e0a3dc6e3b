"""The http data path of gfal mounts (adapters/gfal/http.py).

Against the real XRootD (XrdHttp) of `make test`: uploads stream in one PUT, a cut upload
leaves nothing, reads are byte-exact. Against a small fake web server, for what XRootD
cannot be made to do: stop in the middle of a body, redirect a PUT, reject a token.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from adapters.base import AuthenticationFailed, BackendUnavailable, Credential, StorageError
from adapters.gfal import UPLOAD_PREFIX, GfalStorage, create
from adapters.gfal.http import HttpData
from adapters.gfal.options import GfalSettings
from adapters.gfal.write import GfalWriter, StreamedPutWriter
from adapters.streamed_body import Feed
from tests.adapters.conformance import read, write
from tests.testbeds import run_testbed, running_testbed

HTTP_URL = "http://127.0.0.1:11095/data"


@pytest.fixture(scope="module")
def xrootd_data() -> Iterator[Path]:
    with running_testbed("xrootd"):
        yield Path(run_testbed("xrootd", "path").stdout.strip())


@pytest.fixture
def se(xrootd_data: Path) -> Iterator[tuple[GfalStorage, Path]]:
    name = f"h-{uuid.uuid4().hex[:12]}"
    admin = create({"base_url": HTTP_URL, "anonymous": True}).bind(None)
    admin.mkdir(name)
    storage = create({"base_url": f"{HTTP_URL}/{name}", "anonymous": True}).bind(None)
    assert isinstance(storage, GfalStorage)
    yield storage, xrootd_data / name
    shutil.rmtree(xrootd_data / name, ignore_errors=True)


def test_upload_with_a_size_streams_and_round_trips(se: tuple[GfalStorage, Path]) -> None:
    storage, on_disk = se
    data = os.urandom(3 * 1024 * 1024 + 17)
    writer = storage.open_write("s.bin", size_hint=len(data))
    assert isinstance(writer, StreamedPutWriter)
    writer.abort()
    assert write(storage, "s.bin", data, chunk=333_333).size == len(data)
    assert (on_disk / "s.bin").read_bytes() == data
    assert read(storage, "s.bin", 1000, 2_000_000) == data[1000:2_000_000]
    # Without a size (a chunked client upload) the gfal2 writer takes it.
    assert type(storage.open_write("t.bin")) is GfalWriter


def test_cut_upload_leaves_nothing_and_keeps_the_old_file(se: tuple[GfalStorage, Path]) -> None:
    storage, on_disk = se
    write(storage, "keep.bin", b"good")
    writer = storage.open_write("keep.bin", size_hint=8 * 1024 * 1024)
    writer.write(b"x" * (3 * 1024 * 1024))
    writer.abort()  # the client went away
    writer = storage.open_write("keep.bin", size_hint=8 * 1024 * 1024)
    writer.write(b"y" * (3 * 1024 * 1024))
    with pytest.raises(StorageError, match="fewer bytes"):
        writer.commit()
    writer = storage.open_write("keep.bin", size_hint=10)
    with pytest.raises(StorageError, match="more bytes"):
        writer.write(b"z" * 11)
    assert (on_disk / "keep.bin").read_bytes() == b"good"
    assert [p.name for p in on_disk.iterdir()] == ["keep.bin"]  # no temporary, no probe
    assert not any(p.name.startswith(UPLOAD_PREFIX) for p in on_disk.iterdir())


# --- a fake web server -------------------------------------------------------------


class _Fake(http.server.BaseHTTPRequestHandler):
    """Answers as told by ``mode``; remembers the Authorization headers it saw."""

    mode: ClassVar[str] = "short"
    seen: ClassVar[list[str]] = []
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        if self.mode == "reject":
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        # "short": promise 1000 bytes, send 100, hang up.
        self.send_response(206)
        self.send_header("Content-Range", "bytes 0-999/1000")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"a" * 100)
        self.wfile.flush()
        self.close_connection = True

    def do_PUT(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(307)
        self.send_header("Location", "http://127.0.0.1:9/pool")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Fake.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/data"
    server.shutdown()
    server.server_close()


def data_path(base: str, token: str | None = "tok-secret-42") -> HttpData:
    return HttpData(
        base, "http", token, GfalSettings.from_options({"base_url": base, "timeout": 5})
    )


def test_a_body_cut_short_raises_instead_of_ending(fake: str) -> None:
    _Fake.mode = "short"
    got = bytearray()
    with pytest.raises(StorageError):
        for block in data_path(fake).read("f", 0, 1000):
            got += block
    assert len(got) < 1000


def test_token_goes_in_a_header_and_401_is_authentication_failed(fake: str) -> None:
    _Fake.mode = "reject"
    with pytest.raises(AuthenticationFailed) as info:
        data_path(fake).read("f", 0, 10)
    assert "tok-secret-42" not in str(info.value)
    assert _Fake.seen == ["Bearer tok-secret-42"]


def test_a_redirected_put_is_refused_and_not_followed(fake: str) -> None:
    data = data_path(fake, token=None)
    assert data.try_put(".fedgate-upload-probe") is False
    feed = Feed()
    body = feed.chunk(3)
    feed.put(b"abc", lambda: None)
    with pytest.raises(StorageError, match="redirected"):
        data.put("f", body)
    assert _Fake.seen == ["", ""]  # no token configured: no header at all


def test_se_down_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable):
        data_path("http://127.0.0.1:9/data").read("f", 0, 10)


def test_dav_scheme_talks_http() -> None:
    data = HttpData(
        "dav://127.0.0.1:1/data",
        "dav",
        None,
        GfalSettings.from_options({"base_url": "dav://127.0.0.1:1/data"}),
    )
    assert data.url("a b") == "http://127.0.0.1:1/data/a%20b"


def test_x509_mounts_keep_gfal2_for_bytes() -> None:
    adapter = create({"base_url": HTTP_URL, "x509_proxy": "/nonexistent/proxy"})
    storage = adapter.bind(Credential("bearer", {"token": "t"}))
    assert isinstance(storage, GfalStorage) and storage.http is None


def test_stream_http_off_keeps_gfal2_for_bytes(xrootd_data: Path) -> None:
    name = f"h-{uuid.uuid4().hex[:12]}"
    create({"base_url": HTTP_URL, "anonymous": True}).bind(None).mkdir(name)
    try:
        options = {"base_url": f"{HTTP_URL}/{name}", "anonymous": True, "stream_http": False}
        storage = create(options).bind(None)
        assert isinstance(storage, GfalStorage) and storage.http is None
        data = os.urandom(100_000)
        writer = storage.open_write("g.bin", size_hint=len(data))
        assert type(writer) is GfalWriter
        writer.abort()
        write(storage, "g.bin", data)
        assert read(storage, "g.bin", 10) == data[10:]
    finally:
        shutil.rmtree(xrootd_data / name, ignore_errors=True)


def test_feed_copies_a_callers_buffer_but_not_bytes() -> None:
    # Blocks are sent after put returns: a caller's reusable buffer must be copied,
    # immutable bytes (and views of them) need not be.
    feed = Feed()
    buffer = bytearray(b"abc")
    feed.put(buffer, lambda: None)
    buffer[:] = b"xyz"
    assert bytes(feed.take(3)) == b"abc"
    data = b"defg"
    feed.put(memoryview(data)[1:], lambda: None)
    kept = feed.take(3)
    assert isinstance(kept, memoryview) and kept.obj is data and bytes(kept) == b"efg"
