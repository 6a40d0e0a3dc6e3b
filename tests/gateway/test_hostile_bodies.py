"""Hostile requests cost the gateway nothing: a small JSON or form body past its limit is
refused on its Content-Length before a byte is read, a streamed one at the limit, and an
archive of 300,000 empty entries is refused after counting what the limit allows.

Memory is measured on a real ``fedgate serve`` process (VmHWM, its peak resident size,
from /proc), not with a timer.
"""

from __future__ import annotations

import base64
import io
import json
import os
import select
import socket
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.api.archive import Archive
from gateway.api.archive_limits import UnsafeArchive, scan_tar
from tests.gateway.helpers import is_error
from tests.scale.procs import Server, cli, serve
from tests.server import Running

MIB = 1024 * 1024
HOSTILE = 300 * MIB
SMALL_BODY_LIMIT = 64 * 1024  # gateway/api/web.py form_or_json's default

# Every route that reads a small JSON or form body, with the method it takes.
SMALL_BODY_ROUTES = [
    ("POST", "/token"),
    ("POST", "/token/revoke"),
    ("POST", "/token/native"),
    ("POST", "/authenticate"),
    ("PUT", "/user/externalKeys"),
    ("POST", "/explain"),
]


# --- statuses (the in-process server) -----------------------------------------------------


@pytest.mark.parametrize(("method", "path"), SMALL_BODY_ROUTES)
def test_small_bodies_past_the_limit_are_refused(gw: Running, method: str, path: str) -> None:
    headers = {"apikey": gw.key, "Content-Type": "application/json"}
    too_big = b'{"a": "' + b"x" * SMALL_BODY_LIMIT + b'"}'
    with httpx.Client(base_url=gw.api, headers=headers, timeout=30) as c:
        is_error(c.request(method, path, content=too_big), 413, 41301)

        def streamed() -> Iterator[bytes]:  # chunked: no Content-Length to judge by
            for _ in range(4):
                yield b"x" * (SMALL_BODY_LIMIT // 2)

        is_error(c.request(method, path, content=streamed()), 413, 41301)


def test_an_upload_data_body_past_its_limit_is_refused(tmp_path: Path) -> None:
    from tests.server import local_settings, running

    settings = local_settings(tmp_path, max_json_upload_bytes=MIB)
    with running(settings) as gw, gw.client() as c:
        json_type = {"Content-Type": "application/carmin+json"}
        body = upload_body(os.urandom(MIB))
        is_error(c.put("/path/local/f", content=body, headers=json_type), 413, 41301)
        is_error(c.put("/path/local/f", content=iter([body]), headers=json_type), 413, 41301)
        assert not (gw.data / "f").exists()


# --- memory of a real gateway process -----------------------------------------------------


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def hostile_request(
    port: int,
    method: str,
    path: str,
    chunked: bool,
    headers: str = "",
    content_type: str = "application/json",
) -> tuple[int, int]:
    """Send ``method path`` with a 300 MB body (declared, or chunked) as fast as the server
    takes it, stopping as soon as it answers or hangs up. Returns (status, bytes sent);
    status 0 if the answer was lost to the connection's reset."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HOSTILE}"
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n"
        f"{headers}{framing}\r\n\r\n"
    ).encode()
    block = b"a" * MIB
    piece = b"%x\r\n%s\r\n" % (len(block), block) if chunked else block
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        view, offset = memoryview(piece), 0
        while sent < HOSTILE:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            if readable:
                break  # an answer (or the end of the connection): stop sending
            if not writable:
                raise AssertionError("the gateway neither read nor answered for 30 s")
            try:
                n = sock.send(view[offset:])
            except (BrokenPipeError, ConnectionResetError):
                break
            offset += n
            if offset == len(piece):
                offset, sent = 0, sent + len(block)
        sock.setblocking(True)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        except ConnectionResetError:
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    tmp = tmp_path_factory.mktemp("hostile")
    (tmp / "data").mkdir()
    config = tmp / "fedgate.toml"
    config.write_text(
        "[server]\n"
        f"state_dir = {json.dumps(str(tmp / 'state'))}\n"
        'api_prefix = "/rest"\n'
        f"max_json_upload_bytes = {4 * MIB}\n"
        "\n[mounts.local]\n"
        'type = "posix"\n'
        f"root = {json.dumps(str(tmp / 'data'))}\n"
    )
    env = {"FEDGATE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    key = cli(config, env, "user", "add", "admin", "--admin").strip()
    srv = serve(config, env, tmp / "serve.log")
    try:
        yield srv, key
    finally:
        srv.stop()


def _warm_up(srv: Server, key: str) -> None:
    """Exercise every route once, so the baseline holds what normal requests allocate."""
    with httpx.Client(base_url=srv.api, headers={"apikey": key}, timeout=30) as c:
        for method, path in SMALL_BODY_ROUTES:
            c.request(method, path, json={"a": "b"})
        c.put("/path/local/warm", content=upload_body(b"warm"), headers=CARMIN_JSON)
        c.put("/path/local/warm-archive", content=upload_body(tar_gz(10), "Archive"),
              headers=CARMIN_JSON)  # fmt: skip


CARMIN_JSON = {"Content-Type": "application/carmin+json"}


def test_300_mb_bodies_leave_the_gateways_memory_flat(server: tuple[Server, str]) -> None:
    srv, key = server
    _warm_up(srv, key)
    before = vm_hwm(srv.proc.pid)
    results = []
    for method, path in SMALL_BODY_ROUTES:  # unauthenticated, as an attacker would
        for chunked in (False, True):
            got = hostile_request(srv.port, method, "/rest" + path, chunked)
            results.append((path, chunked, *got))
    for chunked in (False, True):  # the UploadData body, authenticated (else a 401 first)
        got = hostile_request(
            srv.port,
            "PUT",
            "/rest/path/local/big",
            chunked,
            f"apikey: {key}\r\n",
            "application/carmin+json",
        )
        results.append(("/path (carmin+json)", chunked, *got))
    after = vm_hwm(srv.proc.pid)
    for path, chunked, status, sent in results:
        assert status in (413, 401, 0), (path, chunked, status)  # never a 2xx, never a 5xx
        assert sent < HOSTILE, (path, chunked, "the whole body was taken")
    # Read whole, one 300 MB body raised the peak by ~600 MB; read to the limit, the
    # peak moves by a few socket buffers at most.
    assert after - before < 32 * MIB, (before, after)
    assert srv.proc.poll() is None


def upload_body(data: bytes, kind: str = "File") -> bytes:
    return json.dumps({"type": kind, "base64Content": base64.b64encode(data).decode()}).encode()


# --- archives with too many entries ---------------------------------------------------------


def tar_gz(entries: int) -> bytes:
    """A gzipped tar of ``entries`` empty files, built header by header (tarfile's own
    writer takes ~50 µs per header): one ustar header template, name and checksum
    patched per entry."""
    template = bytearray(tarfile.TarInfo("e0000000").tobuf(tarfile.USTAR_FORMAT))
    base = sum(template) - sum(template[148:156]) + 8 * 32 - sum(b"e0000000")
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    out = []
    for i in range(entries):
        name = b"e%07d" % i
        template[0:8] = name
        template[148:156] = b"%06o\x00 " % (base + sum(name))
        out.append(gz.compress(bytes(template)))
    out.append(gz.compress(bytes(1024)))
    out.append(gz.flush())
    return b"".join(out)


@pytest.fixture(scope="module")
def many_entries() -> bytes:
    data = tar_gz(300_000)
    assert len(data) < 2 * MIB + MIB // 2
    return data


def test_the_generated_tar_is_a_real_tar() -> None:
    with tarfile.open(fileobj=io.BytesIO(tar_gz(3)), mode="r:gz") as tf:
        assert tf.getnames() == ["e0000000", "e0000001", "e0000002"]


def test_300000_empty_tar_entries_are_refused_after_the_limit(
    many_entries: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick header scan refuses: tarfile never parses a single header."""
    parsed = count_tar_headers(monkeypatch)
    with pytest.raises(UnsafeArchive, match="more than 100000 entries"):
        Archive(many_entries, 10 * 1024**3, 100_000)
    assert parsed == []


def test_the_quick_scan_stops_at_the_limit(many_entries: bytes) -> None:
    """Entries are counted as they are read: the scan reads limit + 1 headers, no more."""
    from gateway.api.archive_limits import Tally

    tally = Tally(10**12, 1000)
    with pytest.raises(UnsafeArchive):
        scan_tar(many_entries, tally)
    assert tally.entries == 1001


def test_tarfile_counts_as_it_goes_when_the_scan_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header the scan does not follow (here: every checksum made unreadable to it)
    leaves the verdict to tarfile, read with next(): it too stops at limit + 1."""
    import gateway.api.archive_limits as limits

    monkeypatch.setattr(limits, "_checksum_ok", lambda header: False)
    parsed = count_tar_headers(monkeypatch)
    with pytest.raises(UnsafeArchive, match="more than 1000 entries"):
        Archive(tar_gz(5000), 10**12, 1000)
    assert len(parsed) == 1001


def count_tar_headers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one for every header tarfile parses."""
    parsed: list[int] = []
    real = tarfile.TarInfo.fromtarfile.__func__  # type: ignore[attr-defined]

    def counting(cls: type[tarfile.TarInfo], tf: tarfile.TarFile) -> tarfile.TarInfo:
        parsed.append(1)
        info: tarfile.TarInfo = real(cls, tf)
        return info

    monkeypatch.setattr(tarfile.TarInfo, "fromtarfile", classmethod(counting))
    return parsed


def _zip(entries: int, size: int = 0) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(entries):
            zf.writestr(f"f{i}", b"\0" * size)
    return out.getvalue()


def test_a_zip_directory_is_counted_before_zipfile_reads_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = []
    real_init = zipfile.ZipFile.__init__

    def counting_init(self: zipfile.ZipFile, *args: object, **kw: object) -> None:
        opened.append(1)
        real_init(self, *args, **kw)  # type: ignore[call-overload]

    many, small = _zip(5000), _zip(3, 1000)
    monkeypatch.setattr(zipfile.ZipFile, "__init__", counting_init)
    with pytest.raises(UnsafeArchive, match="more than 1000 entries"):
        Archive(many, 10**12, 1000)
    with pytest.raises(UnsafeArchive, match="expands to more than"):
        Archive(small, 2999, 10)  # 3000 bytes declared: one past the limit
    assert opened == []


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_limits_are_exact_for_every_tar_flavour(mode: str, fmt: int) -> None:
    long_name = "d/" + ("é" * 10 if fmt == tarfile.USTAR_FORMAT else "é" * 120) + ".txt"
    files = {long_name: b"x" * 1000, "b.bin": os.urandom(70_000), "c": b""}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=fmt) as tf:  # type: ignore[call-overload]
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    data = out.getvalue()
    archive = Archive(data, 71_000, 3)  # exactly at both limits: accepted
    assert sorted(m.name for m in archive.members) == sorted(files)
    with pytest.raises(UnsafeArchive, match="entries"):
        Archive(data, 71_000, 2)
    with pytest.raises(UnsafeArchive, match="expands"):
        Archive(data, 70_999, 3)


def test_300000_entries_through_the_api_leave_memory_flat(
    server: tuple[Server, str], many_entries: bytes
) -> None:
    srv, key = server
    _warm_up(srv, key)
    before = vm_hwm(srv.proc.pid)
    r = httpx.put(
        srv.api + "/path/local/many",
        content=upload_body(many_entries, "Archive"),
        headers={"apikey": key, **CARMIN_JSON},
        timeout=120,
    )
    is_error(r, 400, 40006)
    assert "more than 100000 entries" in r.json()["errorMessage"]
    # Parsed by tarfile, 100,000 entries alone held ~60 MB; the scan holds one 1 MiB piece.
    assert vm_hwm(srv.proc.pid) - before < 24 * MIB


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "zip"])
def test_a_damaged_archive_is_a_400_and_leaves_nothing(gw: Running, mode: str) -> None:
    out = io.BytesIO()
    if mode == "zip":
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(4):
                zf.writestr(f"f{i}", os.urandom(20_000))
    else:
        with tarfile.open(fileobj=out, mode=mode) as tf:  # type: ignore[call-overload]
            for i in range(4):
                data = os.urandom(20_000)
                info = tarfile.TarInfo(f"f{i}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    damaged = bytearray(out.getvalue())
    middle = len(damaged) * 3 // 5
    damaged[middle : middle + 16] = bytes(16)  # in the compressed data of a late entry
    with gw.client() as c:
        r = c.put(
            "/path/local/unpacked",
            content=upload_body(bytes(damaged), "Archive"),
            headers=CARMIN_JSON,
        )
    is_error(r, 400, 40006)
    assert not (gw.data / "unpacked").exists()


@pytest.mark.parametrize(("method", "path"), SMALL_BODY_ROUTES)
def test_a_declared_length_past_the_limit_is_refused_before_the_body(
    gw: Running, method: str, path: str
) -> None:
    """Only the head is sent: the answer comes without the gateway waiting for a byte."""
    host, port = gw.url.removeprefix("http://").split(":")
    head = (
        f"{method} /rest{path} HTTP/1.1\r\nHost: t\r\napikey: {gw.key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {HOSTILE}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        answer = sock.recv(65536)  # a timeout here: the gateway waited for the body
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
