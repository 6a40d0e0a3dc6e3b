"""Digests on every backend, against its real server (iRODS: the protocol test server):
kept after an upload through fedgate and served on both faces without reading the file,
a wrong Content-Digest leaving nothing on the storage, a file changed behind fedgate's
back answered with its new digest, and gfal2's http plugin (davix underneath, as grid
jobs run it) accepting the door's answers."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.base import NotFound, Storage
from tests.server import Running

# The module-scoped gateway with one mount per backend, and the iRODS server it uses.
from tests.webdav.backends import BACKENDS, MIB, every_backend, irods  # noqa: F401
from tests.webdav.helpers import token


@pytest.fixture
def dav(request: pytest.FixtureRequest) -> Running:
    """tests/webdav/backends.py's gateway (module-scoped: started once)."""
    running: Running = request.getfixturevalue("every_backend")
    return running


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def sha(data: bytes) -> str:
    return f"sha-256=:{b64(hashlib.sha256(data).digest())}:"


def rfc3230(data: bytes) -> str:
    return f"adler32={zlib.adler32(data) & 0xFFFFFFFF:08x},md5={b64(hashlib.md5(data).digest())}"


def storage_of(dav: Running, mount: str) -> Storage:
    """The mount's storage as the gateway binds it (service credential)."""
    config = dav.gateway.mounts.config(mount)
    return dav.gateway.mounts.storage(config, "admin")


@pytest.fixture
def reads(dav: Running, mount: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths the mount's storage class was asked to read."""
    cls = type(storage_of(dav, mount))
    seen: list[str] = []
    original = cls.open_read

    def counting(self: Any, path: str, start: int = 0, end: int | None = None) -> Any:
        seen.append(path)
        return original(self, path, start, end)

    monkeypatch.setattr(cls, "open_read", counting)
    return seen


@pytest.fixture
def folder(dav: Running, mount: str) -> Iterator[str]:
    name = f"dg-{uuid.uuid4().hex[:8]}"
    with httpx.Client(headers={"apikey": dav.key}, timeout=60) as c:
        assert c.request("MKCOL", f"{dav.url}/webdav/{mount}/{name}").status_code == 201
        yield name
        c.delete(f"{dav.url}/webdav/{mount}/{name}")


@pytest.mark.parametrize("mount", BACKENDS)
def test_an_upload_keeps_its_digests_and_both_faces_serve_them_without_reading(
    dav: Running, mount: str, folder: str, reads: list[str]
) -> None:
    data = os.urandom(6 * MIB + 11)  # past S3's multipart threshold
    carmin = f"{dav.api}/path/{mount}/{folder}/f.bin"
    want = {"Want-Repr-Digest": "sha-256=10", "Want-Digest": "adler32, md5"}
    with httpx.Client(headers={"apikey": dav.key}, timeout=120) as c:
        r = c.put(
            carmin,
            content=data,
            headers={"Content-Type": "application/octet-stream", "Content-Digest": sha(data)},
        )
        assert r.status_code == 201, r.text
        assert r.headers["repr-digest"] == sha(data)
        with dav.gateway.store.transaction(write=False) as tx:
            row = tx.query_one(
                "SELECT md5, adler32, sha256 FROM digests WHERE mount = ? AND path = ?",
                (mount, f"{folder}/f.bin"),
            )
        assert row == (
            hashlib.md5(data).hexdigest(),
            f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
            hashlib.sha256(data).hexdigest(),
        )
        r = c.head(carmin + "?action=content", headers=want)
        assert r.status_code == 200
        assert (r.headers["repr-digest"], r.headers["digest"]) == (sha(data), rfc3230(data))
        r = c.head(f"{dav.url}/webdav/{mount}/{folder}/f.bin", headers=want)
        assert (r.headers["repr-digest"], r.headers["digest"]) == (sha(data), rfc3230(data))
        assert c.get(carmin + "?action=md5").json() == {"md5": hashlib.md5(data).hexdigest()}
        assert reads == []  # every answer from the store (or the SE's own checksum)
        # A redirect to the storage carries the digest the job must check (S3 presigns).
        r = c.get(carmin + "?action=content", headers={**want, "X-Fedgate-Redirect": "always"})
        assert r.headers["repr-digest"] == sha(data)
        if r.status_code == 307:
            assert httpx.get(r.headers["location"], timeout=60).content == data


@pytest.mark.parametrize("mount", BACKENDS)
def test_a_wrong_content_digest_leaves_nothing_on_the_storage(
    dav: Running, mount: str, folder: str
) -> None:
    data = os.urandom(MIB + 5)
    wrong = sha(b"something else")
    with httpx.Client(headers={"apikey": dav.key}, timeout=120) as c:
        r = c.put(
            f"{dav.api}/path/{mount}/{folder}/w.bin",
            content=data,
            headers={"Content-Type": "application/octet-stream", "Content-Digest": wrong},
        )
        assert r.status_code == 400 and r.json()["errorCode"] == 40005
        r = c.put(f"{dav.url}/webdav/{mount}/{folder}/w.bin", content=data,
                  headers={"Content-Digest": wrong})  # fmt: skip
        assert r.status_code == 400
    with pytest.raises(NotFound):  # asked of the storage itself, not of the gateway
        storage_of(dav, mount).stat(f"{folder}/w.bin")


@pytest.mark.parametrize("mount", BACKENDS)
def test_a_file_changed_behind_the_gateways_back_gets_its_new_digest(
    dav: Running, mount: str, folder: str
) -> None:
    first, second = os.urandom(300_000), os.urandom(300_007)
    path = f"{folder}/c.bin"
    with httpx.Client(headers={"apikey": dav.key}, timeout=60) as c:
        put = c.put(f"{dav.url}/webdav/{mount}/{path}", content=first)
        assert put.status_code == 201
        storage = storage_of(dav, mount)
        writer = storage.open_write(path, len(second))  # straight to the storage
        writer.write(second)
        writer.commit()
        want = {"Want-Repr-Digest": "sha-256=10", "Want-Digest": "adler32"}
        for _ in range(2):  # recomputed once, then kept
            r = c.head(f"{dav.url}/webdav/{mount}/{path}", headers=want)
            assert r.headers["repr-digest"] == sha(second)
            assert r.headers["digest"] == f"adler32={zlib.adler32(second) & 0xFFFFFFFF:08x}"


@pytest.mark.parametrize("mount", BACKENDS)
def test_gfal2_http_plugin_checks_the_doors_answers(dav: Running, mount: str, folder: str) -> None:
    import gfal2  # Debian's module, exposed to the venv by scripts/gfal2-venv.sh

    data = os.urandom(2 * MIB + 1)
    with httpx.Client(headers={"apikey": dav.key}, timeout=60) as c:
        assert c.put(f"{dav.url}/webdav/{mount}/{folder}/g.bin", content=data).status_code == 201
    ctx = gfal2.creat_context()
    ctx.set_opt_boolean("HTTP PLUGIN", "RETRIEVE_BEARER_TOKEN", False)
    prefix = f"{dav.url}/webdav/{mount}".replace("http://", "dav://")
    ctx.cred_set(prefix, ctx.cred_new("BEARER", token(dav, f"storage.read:/{mount}")))
    url = f"{prefix}/{folder}/g.bin"
    assert ctx.checksum(url, "ADLER32").lower() == f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    assert ctx.checksum(url, "MD5").lower() == hashlib.md5(data).hexdigest()
