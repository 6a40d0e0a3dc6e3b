"""Hostile paths and bodies, table-driven, on every mount type: each a clear 4xx, and the
backend (looked at directly, not through the gateway) holds nothing new afterwards."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.helpers import Backend, posix_backend
from tests.server import Running, local_settings, running

LIMIT = 64 * 1024
JSON_LIMIT = 256 * 1024
ARCHIVE_LIMIT = 1024 * 1024
MOUNTS = ["posix", "s3", "girder", "gfal", "gfalhttp", "irods"]

# Appended to /rest/path/<mount>/ as raw bytes on the wire (no client-side cleaning).
PATH_TRICKS = [
    "../secret.txt",
    "%2e%2e/secret.txt",
    "%2E%2E/secret.txt",
    "..%2fsecret.txt",
    "a%2f..%2f..%2fsecret.txt",
    "a%5c..%5csecret.txt",
    "a\\..\\secret.txt",
    "x%00y",
    "/secret.txt",  # "//"
    "a//b",
    "./x",
    "x/.",
    "x/..",
    "trailingdot.",
    "trailingspace%20",
    "dirdot./x",
    "x//",
    "a" * 256,
    "/".join(["d"] * 2100),
    "e%CC%81",  # NFD "é": only the NFC twin may name a file
    "%C3%28",  # invalid UTF-8
]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, remote_backends: list[Backend]
) -> Iterator[tuple[Running, dict[str, Backend]]]:
    tmp = tmp_path_factory.mktemp("hostile")
    backends = {b.name: b for b in [posix_backend(tmp / "posix"), *remote_backends]}
    settings = local_settings(
        tmp,
        mounts=[b.mount() for b in backends.values()],
        max_upload_bytes=LIMIT,
        max_json_upload_bytes=JSON_LIMIT,
        max_archive_bytes=ARCHIVE_LIMIT,
    )
    with running(settings) as gw:
        yield gw, backends


def raw(gw: Running, request: bytes, half_close: bool = False) -> bytes:
    host, port = gw.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as s:
        s.sendall(request)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def status_of(answer: bytes) -> int:
    line = answer.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) > 1 and line[1].isdigit() else 0


def carmin_code(answer: bytes) -> int | None:
    body = answer.split(b"\r\n\r\n", 1)[-1]
    try:
        data = json.loads(body)
    except ValueError:
        return None
    assert list(data)[:2] == ["errorCode", "errorMessage"], data
    return int(data["errorCode"])


def head(gw: Running, method: str, path: str, extra: str = "") -> bytes:
    return (
        f"{method} /rest/path/{path} HTTP/1.1\r\nHost: x\r\napikey: {gw.key}\r\n{extra}"
        "Connection: close\r\n"
    ).encode()


@pytest.mark.parametrize("mount", MOUNTS)
def test_path_tricks(gateway: tuple[Running, dict[str, Backend]], mount: str) -> None:
    gw, backends = gateway
    backend = backends[mount]
    before = backend.peek()
    failures = []
    for trick in PATH_TRICKS:
        path = f"{mount}/{trick}"
        octet = "Content-Type: application/octet-stream\r\nContent-Length: 4\r\n"
        for method, extra, body in (
            ("GET", "", b""),
            ("PUT", octet, b"evil"),
            ("PUT", "", b""),  # mkdir
            ("DELETE", "", b""),
        ):
            query = "?action=content" if method == "GET" else ""
            request = head(gw, method, path + query, extra) + b"\r\n" + body
            answer = raw(gw, request)
            status = status_of(answer)
            if not 400 <= status < 500:
                failures.append(f"{method} {trick[:40]!r}: {answer[:120]!r}")
            elif b"outside" in answer:
                failures.append(f"{method} {trick[:40]!r} leaked content")
    assert not failures, "\n".join(failures)
    assert backend.peek() == before


def _zip_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):  # 3 × 2 MiB of zeros: a few KiB compressed, 6 MiB unpacked
            zf.writestr(f"zeros{i}", b"\0" * (2 * ARCHIVE_LIMIT))
    return buf.getvalue()


def _tar_escape() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("ok.txt", "../escape.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tf.addfile(info, io.BytesIO(b"hi"))
    return buf.getvalue()


def _upload(content: bytes, kind: str = "File", md5: str | None = None) -> bytes:
    data: dict[str, str] = {"type": kind, "base64Content": base64.b64encode(content).decode()}
    if md5 is not None:
        data["md5"] = md5
    return json.dumps(data).encode()


CARMIN_JSON = "Content-Type: application/carmin+json\r\n"
OCTET = "Content-Type: application/octet-stream\r\n"

# (case, headers, body, half_close, expected status, expected CARMIN code or None)
BODIES: list[tuple[str, str, bytes, bool, int, int | None]] = [
    ("truncated", OCTET + "Content-Length: 1000\r\n", b"t" * 100, True, 400, None),
    ("over-limit", OCTET + f"Content-Length: {LIMIT + 1}\r\n", b"o" * 10, False, 413, 41301),
    (
        "over-limit-chunked",
        OCTET + "Transfer-Encoding: chunked\r\n",
        b"".join(b"%x\r\n%s\r\n" % (8192, b"c" * 8192) for _ in range(12)) + b"0\r\n\r\n",
        False,
        413,
        41301,
    ),
    ("length-not-a-number", OCTET + "Content-Length: abc\r\n", b"abc", False, 400, None),
    (
        "length-and-chunked",
        OCTET + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
        b"3\r\nabc\r\n0\r\n\r\n",
        False,
        400,
        None,
    ),
    ("invalid-json", CARMIN_JSON, b"{not json", False, 400, 40004),
    ("json-not-object", CARMIN_JSON, b"[1, 2]", False, 400, 40004),
    (
        "invalid-base64",
        CARMIN_JSON,
        b'{"type": "File", "base64Content": "%%%not base64"}',
        False,
        400,
        40004,
    ),
    ("md5-mismatch", CARMIN_JSON, _upload(b"data", md5="0" * 32), False, 400, 40005),
    ("json-over-limit", CARMIN_JSON, _upload(b"j" * JSON_LIMIT), False, 413, 41301),
    ("zip-bomb", CARMIN_JSON, _upload(_zip_bomb(), "Archive"), False, 400, 40006),
    ("tar-escape", CARMIN_JSON, _upload(_tar_escape(), "Archive"), False, 400, 40006),
    ("not-an-archive", CARMIN_JSON, _upload(b"plain bytes", "Archive"), False, 400, 40006),
]


@pytest.mark.parametrize("mount", MOUNTS)
def test_hostile_bodies(gateway: tuple[Running, dict[str, Backend]], mount: str) -> None:
    gw, backends = gateway
    backend = backends[mount]
    keep = f"keep-{len(backend.peek())}"
    original = hashlib.sha256(keep.encode()).hexdigest().encode()
    setup = head(gw, "PUT", f"{mount}/{keep}", OCTET + f"Content-Length: {len(original)}\r\n")
    assert status_of(raw(gw, setup + b"\r\n" + original)) == 201
    before = backend.peek()
    failures = []
    for case, headers, body, half_close, status, code in BODIES:
        if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
            headers += f"Content-Length: {len(body)}\r\n"
        for target in (f"b-{case}", keep):  # a new path, and over an existing file
            answer = raw(
                gw, head(gw, "PUT", f"{mount}/{target}", headers) + b"\r\n" + body, half_close
            )
            got = status_of(answer)
            if half_close and got == 0:
                continue  # the server may just drop a body cut short: also fine
            if got != status or (code is not None and carmin_code(answer) != code):
                failures.append(f"{case} -> {target}: {answer[:200]!r}")
    assert not failures, "\n".join(failures)
    assert backend.peek() == before, "a refused body left something on the backend"
    assert backend.read(keep) == original, "a refused body damaged the existing file"


def test_zip_bomb_is_refused_before_reading_it(tmp_path: Path) -> None:
    """The unpacked size is judged from the archive's directory, not by inflating it."""
    from gateway.api.archive import Archive
    from gateway.errors import CarminError

    with pytest.raises(CarminError) as err:
        Archive(_zip_bomb(), ARCHIVE_LIMIT, 100)
    assert err.value.spec.code == 40006
    assert "expands to" in err.value.message
