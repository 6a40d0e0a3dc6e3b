"""The gateway over HTTP on gfal mounts: one real XRootD daemon (scripts/testbeds/xrootd.sh)
seen through two mounts on the same folder, ``grid-root`` (root://) and ``grid-http``
(XrdHttp). CARMIN actions byte-exact over both, the SE down (mounts on closed ports: the
shared daemon is never stopped under other tests), missing paths, per-user bearer tokens
from the key vault sent per request (checked on a local probe web server, since this
XRootD has no token authentication), and ``POST /token/native``.

Not tested here: the macaroon path of ``/token/native`` (an https/davs SE answering
``application/macaroon-request``). It needs TLS and XrdMacaroons (or dCache), which the
test SE does not have; the adapter refuses to ask for a macaroon over plain http, so only
the 501 answers can be exercised.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import logging
import os
import shutil
import socket
import threading
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import StorageError
from adapters.gfal import create
from gateway.config import MountConfig
from tests.gateway.helpers import bearer, is_error, token
from tests.server import Running, local_settings, running
from tests.testbeds import run_testbed, running_testbed

ROOT_URL = "root://127.0.0.1:11094//data"
HTTP_URL = "http://127.0.0.1:11095/data"
MOUNTS = ("grid-root", "grid-http")
OCTET = {"Content-Type": "application/octet-stream"}
# XRootD here has no token authentication: the tokens travel and are ignored.
ADMIN_TOKENS = {"grid-root": "SECRET-root-7f3a9c", "grid-http": "SECRET-http-2b8d1e"}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Probe(http.server.BaseHTTPRequestHandler):
    """A web server standing for a token-checking SE: it remembers each request's
    Authorization header and rejects every request (401)."""

    seen: list[str] = []

    def _reject(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET = do_PUT = do_PROPFIND = do_DELETE = do_MKCOL = _reject

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def se_data() -> Iterator[Path]:
    """The daemon's export folder on disk, to look behind the gateway's back."""
    with running_testbed("xrootd"):
        yield Path(run_testbed("xrootd", "path").stdout.strip())


@pytest.fixture(scope="module")
def probe() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def unique(se_data: Path) -> Iterator[str]:
    name = f"gw-{uuid.uuid4().hex[:10]}"
    admin = create({"base_url": ROOT_URL, "anonymous": True})
    admin.bind(None).mkdir(name)
    admin.close()
    yield name
    shutil.rmtree(se_data / name, ignore_errors=True)


def _gfal(name: str, base_url: str, **extra: Any) -> MountConfig:
    fields = {k: extra.pop(k) for k in ("credential_source",) if k in extra}
    options = {"base_url": base_url, "timeout": 20, **extra}
    return MountConfig(name=name, type="gfal", options=options, **fields)


@pytest.fixture(scope="module")
def gw(unique: str, probe: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    fast = {"timeout": 3, "connect_timeout": 2, "anonymous": True}
    mounts = (
        _gfal("grid-root", f"{ROOT_URL}/{unique}", credential_source="user"),
        _gfal("grid-http", f"{HTTP_URL}/{unique}", credential_source="user"),
        _gfal("grid-anon", f"{ROOT_URL}/{unique}", anonymous=True),
        _gfal("probe", f"http://127.0.0.1:{probe}/data", credential_source="user"),
        _gfal("down-root", f"root://127.0.0.1:{_closed_port()}//data", **fast),
        _gfal("down-http", f"http://127.0.0.1:{_closed_port()}/data", **fast),
    )
    settings = local_settings(tmp_path_factory.mktemp("gfalgw"), mounts=mounts)
    with running(settings) as r:
        for mount, secret in ADMIN_TOKENS.items():
            put_key(r, r.key, mount, secret)
        yield r


def put_key(gw: Running, apikey: str, mount: str, secret: str) -> None:
    body = {"storageIdentifier": mount, "credential": {"kind": "bearer", "token": secret}}
    stored = httpx.put(gw.api + "/user/externalKeys", json=body, headers={"apikey": apikey})
    assert stored.status_code == 200, stored.text
    assert secret not in stored.text


@pytest.fixture(params=MOUNTS)
def mount(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def folder(client: httpx.Client, mount: str) -> str:
    """A fresh directory, made through the gateway (an empty PUT is a mkdir)."""
    name = f"d{uuid.uuid4().hex[:8]}"
    r = client.put(f"/path/{mount}/{name}")
    assert r.status_code == 201, r.text
    return name


# --- CARMIN actions -----------------------------------------------------------------------


def test_carmin_actions_byte_exact(
    client: httpx.Client, mount: str, folder: str, unique: str, se_data: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17) + bytes(range(256))  # crosses read chunks
    base = f"/path/{mount}/{folder}"
    r = client.put(f"{base}/a.bin", content=data, headers=OCTET)
    assert r.status_code == 201, r.text
    assert (se_data / unique / folder / "a.bin").read_bytes() == data  # on the SE's disk
    assert client.put(f"{base}/sub").status_code == 201

    listed = client.get(f"{base}?action=list").json()
    assert {(e["platformPath"], e["isDirectory"]) for e in listed} == {
        (f"/{mount}/{folder}/a.bin", False),
        (f"/{mount}/{folder}/sub", True),
    }
    props = client.get(f"{base}/a.bin?action=properties").json()
    assert props["size"] == len(data) and props["isDirectory"] is False
    assert props["platformPath"] == f"/{mount}/{folder}/a.bin"
    assert client.get(f"{base}/sub?action=properties").json()["isDirectory"] is True
    assert client.get(f"{base}/a.bin?action=exists").json() == {"exists": True}

    got = client.get(f"{base}/a.bin?action=content")
    assert got.status_code == 200 and got.content == data
    assert int(got.headers["content-length"]) == len(data)
    part = client.get(f"{base}/a.bin?action=content", headers={"Range": "bytes=1048570-2097160"})
    assert part.status_code == 206
    assert part.content == data[1048570:2097161]
    assert part.headers["content-range"] == f"bytes 1048570-2097160/{len(data)}"
    tail = client.get(f"{base}/a.bin?action=content", headers={"Range": "bytes=-300"})
    assert tail.status_code == 206 and tail.content == data[-300:]

    md5 = client.get(f"{base}/a.bin?action=md5")
    assert md5.status_code == 200 and md5.json() == {"md5": hashlib.md5(data).hexdigest()}

    small = bytes(range(256)) * 3 + b"\x00\xff"
    upload = {
        "type": "File",
        "base64Content": base64.b64encode(small).decode(),
        "md5": hashlib.md5(small).hexdigest(),
    }
    r = client.put(
        f"{base}/sub/u.bin",
        content=httpx.Request("PUT", "/", json=upload).content,
        headers={"Content-Type": "application/carmin+json"},
    )
    assert r.status_code == 201, r.text
    assert client.get(f"{base}/sub/u.bin?action=content").content == small

    assert client.put(f"{base}/a.bin", content=b"replaced", headers=OCTET).status_code == 201
    assert client.get(f"{base}/a.bin?action=content").content == b"replaced"

    assert client.delete(f"{base}/a.bin").status_code == 204
    is_error(client.get(f"{base}/a.bin?action=properties"), 404, 40401)
    assert client.delete(base).status_code == 204  # recursive: sub/u.bin goes too
    is_error(client.get(f"{base}?action=list"), 404, 40401)
    assert not (se_data / unique / folder).exists()


def test_both_protocols_see_the_same_bytes(client: httpx.Client) -> None:
    data = os.urandom(200_000)
    name = f"x{uuid.uuid4().hex[:8]}.bin"
    assert client.put(f"/path/grid-root/{name}", content=data, headers=OCTET).status_code == 201
    assert client.get(f"/path/grid-http/{name}?action=content").content == data
    assert client.get(f"/path/grid-http/{name}?action=md5").json()["md5"] == (
        hashlib.md5(data).hexdigest()
    )
    assert client.delete(f"/path/grid-http/{name}").status_code == 204
    is_error(client.get(f"/path/grid-root/{name}?action=content"), 404, 40401)


def test_checksums_match_local_values(
    gw: Running, client: httpx.Client, mount: str, folder: str
) -> None:
    data = b"\x00" * 10 + os.urandom(500_000)
    path = f"{folder}/c.bin"
    assert client.put(f"/path/{mount}/{path}", content=data, headers=OCTET).status_code == 201
    r = client.get(f"/path/{mount}/{path}?action=md5")
    assert r.json()["md5"] == hashlib.md5(data).hexdigest()
    # adler32 has no CARMIN action: ask the storage view the gateway itself uses.
    mount_config = gw.gateway.settings.mount(mount)
    assert mount_config is not None
    storage = gw.gateway.mounts.storage(mount_config, "admin")
    assert storage.checksum(path, "adler32") == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"


def test_missing_paths_are_404(client: httpx.Client, mount: str, folder: str) -> None:
    for action in ("properties", "list", "md5", "content"):
        is_error(client.get(f"/path/{mount}/{folder}/nothing?action={action}"), 404, 40401)
    assert client.get(f"/path/{mount}/{folder}/nothing?action=exists").json() == {"exists": False}
    is_error(client.delete(f"/path/{mount}/{folder}/nothing"), 404, 40401)
    r = client.put(f"/path/{mount}/{folder}/no/parent.bin", content=b"x", headers=OCTET)
    is_error(r, 409, 40904)


def test_a_bearer_request_is_streamed_when_the_se_cannot_presign(
    gw: Running, client: httpx.Client, mount: str, folder: str
) -> None:
    data = os.urandom(70_000)
    path = f"/{mount}/{folder}/job.bin"
    assert client.put(f"/path{path}", content=data, headers=OCTET).status_code == 201
    tok = token(gw, f"storage.read:/{mount}/{folder}")
    r = httpx.get(
        f"{gw.api}/path{path}", params={"action": "content"}, headers=bearer(tok), timeout=30
    )
    assert r.status_code == 200 and r.content == data


# --- the SE down --------------------------------------------------------------------------


@pytest.mark.parametrize("mount", ["down-root", "down-http"])
def test_se_down_is_503_with_a_clear_message(client: httpx.Client, mount: str) -> None:
    for action in ("properties", "list", "content"):
        r = client.get(f"/path/{mount}/x?action={action}")
        is_error(r, 503, 50301)
        message = r.json()["errorMessage"]
        assert message.startswith(f"{mount}: ") and "cannot be reached" in message
    is_error(client.put(f"/path/{mount}/x", content=b"1", headers=OCTET), 503, 50301)
    ready = httpx.get(client.base_url.copy_with(path="/readyz"), timeout=30)
    assert ready.status_code == 503
    assert mount in ready.text


# --- per-user bearer tokens ---------------------------------------------------------------


def test_each_users_vault_token_is_sent_per_request_and_never_leaks(
    gw: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    users = {}
    for who in ("alice", "bob"):
        _, key = gw.gateway.users.add_user(f"{who}-{uuid.uuid4().hex[:6]}")
        secret = f"tok-{who}-{uuid.uuid4().hex}"
        put_key(gw, key, "probe", secret)
        users[who] = (key, secret)
    _Probe.seen.clear()
    bodies = []
    for _ in range(2):
        for key, secret in users.values():
            for action in ("properties", "content"):
                r = httpx.get(
                    f"{gw.api}/path/probe/f.bin",
                    params={"action": action},
                    headers={"apikey": key},
                    timeout=30,
                )
                is_error(r, 401, 40103)  # the SE rejected the credential
                bodies.append(r.text)
            seen = [h for h in _Probe.seen if secret in h]
            assert seen and all(h == f"Bearer {secret}" for h in seen)
    secrets = {s for _, s in users.values()}
    # Each user's requests carried that user's token only, every time.
    assert {h.removeprefix("Bearer ") for h in _Probe.seen} == secrets
    # A user without a stored key is refused before anything reaches the SE.
    _, stranger = gw.gateway.users.add_user(f"carol-{uuid.uuid4().hex[:6]}")
    before = len(_Probe.seen)
    r = httpx.get(
        f"{gw.api}/path/probe/f.bin", params={"action": "properties"}, headers={"apikey": stranger}
    )
    is_error(r, 401, 40104)
    assert len(_Probe.seen) == before
    everything = caplog.text + "".join(bodies)
    for secret in secrets:
        assert secret not in everything


def test_tokens_never_appear_in_errors_or_logs_over_root(
    gw: Running, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [
        client.get("/path/grid-root/missing?action=properties"),
        client.get("/path/grid-root/missing?action=content"),
        client.put("/path/grid-root/missing/child", content=b"x", headers=OCTET),
        client.put("/path/grid-root/q%3Fx", content=b"x", headers=OCTET),  # '?': refused
        client.get("/path/grid-http/missing?action=md5"),
    ]
    assert [r.status_code for r in answers] == [404, 404, 409, 400, 404]
    rendered = caplog.text + "".join(r.text + str(r.headers) for r in answers)
    for secret in ADMIN_TOKENS.values():
        assert secret not in rendered
    assert "authz" not in rendered


# --- native delegation --------------------------------------------------------------------


def test_native_credential_is_501_without_a_macaroon_capable_se(
    gw: Running, client: httpx.Client, mount: str, folder: str
) -> None:
    path = f"/{mount}/{folder}/n.bin"
    assert client.put(f"/path{path}", content=b"n", headers=OCTET).status_code == 201
    tok = token(gw, f"storage.read:/{mount}/{folder} storage.create:/{mount}/{folder}")
    for method, target in (("GET", path), ("PUT", f"/{mount}/{folder}/new.bin")):
        r = httpx.post(
            gw.api + "/token/native", json={"path": target, "method": method}, headers=bearer(tok)
        )
        is_error(r, 501, 50101)
        message = r.json()["errorMessage"]
        assert message.startswith(f"{mount}: ")
        assert "https" in message or "macaroon" in message  # says what would work
        for secret in ADMIN_TOKENS.values():
            assert secret not in r.text


# --- the adapter's write-behind (what a broken SE connection mid-upload looks like) -------


def test_a_write_error_in_the_writer_thread_reaches_the_caller(unique: str, se_data: Path) -> None:
    from adapters.gfal.write import GfalWriter

    storage = create({"base_url": f"{ROOT_URL}/{unique}", "anonymous": True}).bind(None)
    writer = storage.open_write("broken.bin")
    assert isinstance(writer, GfalWriter)
    gerror = storage.gfal.GError  # type: ignore[attr-defined]

    class Broken:
        def write(self, data: bytes) -> None:
            raise gerror("Connection reset by peer", 104)

    writer.write(b"x" * 1000)  # reaches the SE
    writer._drain()
    writer._file = Broken()
    with pytest.raises(StorageError) as info:
        for _ in range(10):  # the failure shows up on a later write, or on commit
            writer.write(b"y" * 1000)
        writer.commit()
    assert "cannot be reached" in str(info.value)
    writer.abort()  # safe again
    assert not (se_data / unique / "broken.bin").exists()
    assert [p.name for p in (se_data / unique).iterdir() if p.name.startswith(".fedgate")] == []
