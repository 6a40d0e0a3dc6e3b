"""gfal2 adapter against a real XRootD daemon (scripts/testbeds/xrootd.sh): the conformance
suite over root:// and again over http:// (XrdHttp, same daemon), plus gfal-specific cases."""

from __future__ import annotations

import datetime as dt
import http.server
import os
import shutil
import socket
import threading
import time
import traceback
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.base import (
    AuthenticationFailed,
    BackendUnavailable,
    Credential,
    Features,
    InvalidPath,
    NotFound,
    NotSupported,
    Storage,
    features,
)
from adapters.gfal import UPLOAD_PREFIX, GfalAdapter, GfalStorage, create
from tests.adapters.conformance import AdapterConformance, read, write
from tests.backends import GfalHttpFixtures, GfalRootFixtures, Space
from tests.testbeds import run_testbed, running_testbed

ROOT_URL = "root://127.0.0.1:11094//data"
HTTP_URL = "http://127.0.0.1:11095/data"
TOKEN = "test-bearer-Zm9vYmFy.c2VjcmV0"  # XRootD here has no token auth: it is ignored


@pytest.fixture(scope="session")
def xrootd_data() -> Iterator[Path]:
    """The running daemon's export folder on disk (tests use it for fast bulk setup)."""
    with running_testbed("xrootd"):
        yield Path(run_testbed("xrootd", "path").stdout.strip())


@pytest.fixture
def folder(xrootd_data: Path) -> Iterator[str]:
    """A fresh, empty folder on the SE (created through the SE so the daemon owns it)."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = create({"base_url": ROOT_URL, "anonymous": True}).bind(None)
    admin.mkdir(name)
    yield name
    shutil.rmtree(xrootd_data / name, ignore_errors=True)


def bind(base: str, folder: str, token: str = TOKEN) -> Storage:
    adapter = create({"base_url": f"{base}/{folder}", "timeout": 20})
    return adapter.bind(Credential("bearer", {"token": token}))


class _GfalConformance(AdapterConformance):
    @pytest.fixture(autouse=True)
    def _disk(self, space: Space) -> None:
        self._root_on_disk = space.extra["on_disk"]

    def populate_many(self, storage: Storage, folder: str, count: int) -> None:
        # Setup straight on the daemon's disk: 1100 uploads through gfal2 would only
        # measure uploads; the listing under test still goes through the adapter.
        target = self._root_on_disk / folder
        for i in range(count):
            (target / f"f{i:05d}").touch()


class TestGfalRootConformance(GfalRootFixtures, _GfalConformance):
    pass


class TestGfalHttpConformance(GfalHttpFixtures, _GfalConformance):
    pass


@pytest.fixture(params=[ROOT_URL, HTTP_URL], ids=["root", "http"])
def se(request: pytest.FixtureRequest, folder: str) -> Storage:
    return bind(request.param, folder)


def test_missing_path_is_not_found(se: Storage) -> None:
    with pytest.raises(NotFound):
        se.stat("nothing/here")
    with pytest.raises(NotFound):
        read(se, "nothing")


def test_adler32_is_eight_hex_digits_and_md5_matches(se: Storage) -> None:
    write(se, "empty", b"")
    assert se.checksum("empty", "adler32") == "00000001"  # zero-padded, not "1"
    data = b"\x00" * 10 + b"fedgate" * 1000
    write(se, "d", data)
    assert se.checksum("d", "adler32") == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert se.checksum("d", "ADLER32") == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    import hashlib

    assert se.checksum("d", "md5") == hashlib.md5(data).hexdigest()
    assert se.checksum("d", "sha256") == hashlib.sha256(data).hexdigest()  # streamed


def test_upload_temporaries_are_hidden_and_unreachable(se: Storage, xrootd_data: Path) -> None:
    writer = se.open_write("f")
    writer.write(b"x" * 10)
    try:
        assert [e.name for e in se.list("")] == []
        with pytest.raises(NotFound):
            se.stat(UPLOAD_PREFIX + "anything")
    finally:
        writer.abort()


def test_question_mark_names_are_refused(se: Storage) -> None:
    with pytest.raises(InvalidPath):
        se.stat("what?")


def test_presign_is_not_supported_without_tls(se: Storage) -> None:
    assert not se.capabilities.native_delegation
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    with pytest.raises(NotSupported):
        se.presign("f", "GET", expires)


def test_macaroon_urls_are_declared_header_bound() -> None:
    """An https SE's macaroon rides in a header: the gateway must never mint one for a
    redirect (it could not be followed), and knows it from the capability alone."""
    storage = create({"base_url": "https://se.invalid:8443/data", "anonymous": True}).bind(None)
    assert storage.capabilities.native_delegation
    assert storage.capabilities.presign_needs_headers


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["root", "http"])
def test_se_down_is_backend_unavailable_quickly(scheme: str) -> None:
    port = _closed_port()
    base = f"root://127.0.0.1:{port}//data" if scheme == "root" else f"http://127.0.0.1:{port}/d"
    adapter = create({"base_url": base, "timeout": 3, "connect_timeout": 2})
    storage = adapter.bind(Credential("bearer", {"token": TOKEN}))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        storage.stat("x")
    assert time.monotonic() - started < 5
    assert TOKEN not in str(info.value)
    assert TOKEN not in "".join(traceback.format_exception(info.value))
    with pytest.raises(BackendUnavailable):
        adapter.check()


def test_token_never_appears_in_errors_over_root(folder: str) -> None:
    storage = bind(ROOT_URL, folder, token="SECRET-root-token-42")
    write(storage, "f", b"x")
    for call in (lambda: storage.stat("missing"), lambda: storage.mkdir("f/child")):
        with pytest.raises(Exception) as info:
            call()
        rendered = "".join(traceback.format_exception(info.value))
        assert "SECRET-root-token-42" not in rendered
        assert "authz" not in rendered


def test_bind_requires_a_usable_credential() -> None:
    adapter = create({"base_url": ROOT_URL})
    with pytest.raises(AuthenticationFailed):
        adapter.bind(None)
    with pytest.raises(AuthenticationFailed):
        adapter.bind(Credential("apikey", {"apiKey": "k"}))
    with pytest.raises(AuthenticationFailed):
        adapter.bind(Credential("bearer", {"token": " "}))
    assert create({"base_url": ROOT_URL, "token": "svc"}).bind(None) is not None


def test_bind_pools_one_view_per_credential() -> None:
    adapter = create({"base_url": ROOT_URL})
    a = adapter.bind(Credential("bearer", {"token": "one"}))
    assert adapter.bind(Credential("bearer", {"token": "one"})) is a
    assert adapter.bind(Credential("bearer", {"token": "two"})) is not a
    assert "one" not in repr(a) and "svc" not in repr(
        create({"base_url": ROOT_URL, "token": "svc"}).options
    )


def test_a_gfal_view_has_no_optional_feature_and_reads_ahead_over_root_only() -> None:
    root = create({"base_url": ROOT_URL, "anonymous": True}).bind(None)
    http = create({"base_url": "http://127.0.0.1:1/data", "anonymous": True}).bind(None)
    assert features(root) == features(http) == Features()
    # root:// preads are one request per chunk: the next overlaps the send; http streams.
    assert root.capabilities.read_ahead == 1 and http.capabilities.read_ahead == 0


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"base_url": "ftp://host/x"},
        {"base_url": "root://127.0.0.1:11094//data?authz=x"},
        {"base_url": ROOT_URL, "timeout": 0},
        {"base_url": ROOT_URL, "bogus": 1},
    ],
)
def test_bad_options_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        create(options)


class _AuthProbe(http.server.BaseHTTPRequestHandler):
    """A web server that rejects every request and remembers the Authorization header."""

    seen: list[str] = []

    def _reject(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = do_PROPFIND = _reject

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_bearer_token_is_sent_over_http_and_401_is_authentication_failed() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthProbe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        adapter = create({"base_url": f"http://127.0.0.1:{port}/data", "timeout": 5})
        storage = adapter.bind(Credential("bearer", {"token": "user-token-123"}))
        with pytest.raises(AuthenticationFailed) as info:
            storage.stat("f")
        assert "user-token-123" not in str(info.value)
        assert "Bearer user-token-123" in _AuthProbe.seen
    finally:
        server.shutdown()
        server.server_close()


def test_adapter_type_and_check(folder: str) -> None:
    adapter = create({"base_url": f"{HTTP_URL}/{folder}", "anonymous": True})
    assert isinstance(adapter, GfalAdapter) and adapter.type_name == "gfal"
    adapter.check()
    adapter.close()


def _leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.startswith(UPLOAD_PREFIX)]


def test_no_temporary_is_left_on_the_se(se: Storage, folder: str, xrootd_data: Path) -> None:
    write(se, "plain", b"1")
    write(se, "with space", b"2")  # over http: the spooled path (XrdHttp MOVE quirk)
    write(se, "with space", b"22")
    for name in ("aborted", "aborted space"):
        writer = se.open_write(name)
        writer.write(b"x" * 1000)
        writer.abort()
    on_disk = sorted(p.name for p in (xrootd_data / folder).iterdir())
    assert on_disk == ["plain", "with space"]
    assert (xrootd_data / folder / "with space").read_bytes() == b"22"
    assert _leftovers(xrootd_data / folder) == []


def test_concurrent_use_of_one_view(se: Storage) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> bytes:
        data = bytes([i]) * (100_000 + i)
        write(se, f"c{i}", data, chunk=30_000)
        assert se.stat(f"c{i}").size == len(data)
        return read(se, f"c{i}")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(16)))
    assert [len(r) for r in results] == [100_000 + i for i in range(16)]
    assert all(r == bytes([i]) * len(r) for i, r in enumerate(results))
    assert len(list(se.list(""))) == 16


# --- root:// reads through libgfal2's C API (adapters/gfal/pread.py) ------------------------


def test_root_reads_through_libgfal2_match_the_binding_byte_for_byte(
    folder: str, xrootd_data: Path
) -> None:
    data = os.urandom(9 * 1024 * 1024 + 3)  # preads of 2 and 4 MiB, the last one short
    (xrootd_data / folder / "big.bin").write_bytes(data)
    raw = bind(ROOT_URL, folder)
    plain = create({"base_url": f"{ROOT_URL}/{folder}", "raw_reads": False}).bind(
        Credential("bearer", {"token": TOKEN})
    )
    assert isinstance(raw, GfalStorage) and isinstance(plain, GfalStorage)
    assert raw.raw is not None and plain.raw is None
    for start, end in ((0, None), (5, 4 * 1024 * 1024 + 7), (len(data) - 10, None), (3, 3)):
        want = data[start:end]
        assert b"".join(raw.open_read("big.bin", start, end)) == want
        assert b"".join(plain.open_read("big.bin", start, end)) == want


def test_a_refused_root_open_is_translated_and_hides_the_token(folder: str) -> None:
    storage = bind(ROOT_URL, folder, token="SECRET-raw-token-7")
    assert isinstance(storage, GfalStorage) and storage.raw is not None
    # The stat before it is skipped: the open itself must fail cleanly.
    with pytest.raises(NotFound) as info:
        storage.raw.open(storage.url("missing.bin"), "missing.bin", 0, 10)
    rendered = "".join(traceback.format_exception(info.value))
    assert "SECRET-raw-token-7" not in rendered and "authz" not in rendered
    assert "missing.bin" in str(info.value)


def test_a_root_read_left_half_way_gives_its_context_back(folder: str) -> None:
    storage = bind(ROOT_URL, folder)
    write(storage, "f.bin", os.urandom(9 * 1024 * 1024))
    assert isinstance(storage, GfalStorage) and storage.raw is not None
    pool = storage.raw.pool
    for _ in range(3):  # leaked contexts or handles would pile up, one per round
        chunks = storage.open_read("f.bin")
        assert len(next(chunks)) == storage.raw.chunk
        chunks.close()  # type: ignore[attr-defined]
    assert len(pool._idle) == 1
    assert read(storage, "f.bin")[:4] != b""  # the pooled context still reads


def test_root_reads_fall_back_to_the_binding_without_libgfal2(
    folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adapters.gfal.pread as gfal_pread

    monkeypatch.setattr(gfal_pread, "_tried", True)
    monkeypatch.setattr(gfal_pread, "_library", None)
    storage = bind(ROOT_URL, folder)
    assert isinstance(storage, GfalStorage) and storage.raw is None
    write(storage, "f.bin", b"\x00\xffbinary")
    assert read(storage, "f.bin") == b"\x00\xffbinary"


def test_a_root_file_cut_short_after_its_stat_ends_the_stream_at_its_new_end(
    folder: str, xrootd_data: Path
) -> None:
    data = os.urandom(9 * 1024 * 1024)
    on_disk = xrootd_data / folder / "shrinks.bin"
    on_disk.write_bytes(data)
    storage = bind(ROOT_URL, folder)
    chunks = storage.open_read("shrinks.bin")  # sized 9 MiB by its stat, opened
    with on_disk.open("r+b") as f:
        f.truncate(5 * 1024 * 1024)
    got = [bytes(c) for c in chunks]
    # Whole preads, one short one (1 MiB of the 2 or 4 asked), then the end: never
    # bytes past the cut, never the rest of a short buffer.
    assert isinstance(storage, GfalStorage) and storage.raw is not None
    whole, rest = divmod(5 * 1024 * 1024, storage.raw.chunk)
    assert rest and [len(c) for c in got] == [storage.raw.chunk] * whole + [rest]
    assert b"".join(got) == data[: 5 * 1024 * 1024]


def test_a_root_read_keeps_two_preads_in_flight_on_two_handles(folder: str) -> None:
    storage = bind(ROOT_URL, folder)
    data = os.urandom(17 * 1024 * 1024 + 5)
    write(storage, "f.bin", data)
    assert isinstance(storage, GfalStorage) and storage.raw is not None
    lib = storage.raw.lib
    opened: list[int] = []
    busy, most = 0, 0
    lock = threading.Lock()
    real_open, real_pread = lib.open, lib.pread

    def counting_open(ctx: int, url: str) -> int:
        fd = real_open(ctx, url)
        opened.append(fd)
        return fd

    def counting_pread(ctx: int, fd: int, count: int, offset: int) -> bytearray:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
        try:
            time.sleep(0.05)  # long enough for the next one to start meanwhile
            return real_pread(ctx, fd, count, offset)
        finally:
            with lock:
                busy -= 1

    lib.open, lib.pread = counting_open, counting_pread  # type: ignore[method-assign]
    try:
        assert b"".join(storage.open_read("f.bin")) == data
        assert len(set(opened)) == 2 and most == 2
        opened.clear()
        assert b"".join(storage.open_read("f.bin", 0, 100)) == data[:100]
        assert len(opened) == 1  # one chunk: one handle
    finally:
        del lib.open, lib.pread
