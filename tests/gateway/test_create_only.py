"""A create-only token (``storage.create`` without ``storage.modify``) never replaces a file,
even one that appears while its upload is in flight: on every route that writes (raw PUT,
CARMIN UploadData File and Archive), against a local folder and the real SeaweedFS.

Each race is made for real: the test waits for an event that proves the gateway has
already looked at the target and started writing (its staging file on disk, its S3
multipart upload on the server), then creates the target, and then checks the bytes on
the storage itself.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.base import Credential, NotFound
from adapters.posix import STAGING
from adapters.s3 import create as create_s3
from gateway.config import MountConfig
from tests.gateway.helpers import When, bearer, is_error, tar_gz, token, upload_data, wait_for
from tests.server import Running, local_settings, running
from tests.testbeds import running_testbed

OCTET = {"Content-Type": "application/octet-stream"}
CARMIN_JSON = {"Content-Type": "application/carmin+json"}
MIB = 1024 * 1024
ENDPOINT = "http://127.0.0.1:8333"
BUCKET = "fedgate-tests"


def write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


# --- a local folder ---------------------------------------------------------------------


def staging_files(data: Path) -> list[Path]:
    return [p for p in (data / STAGING).rglob("*") if p.is_file()]


@pytest.fixture
def up(gw: Running) -> Path:
    (gw.data / "up").mkdir()
    return gw.data / "up"


def test_raw_put_keeps_a_file_that_appeared_midway(gw: Running, up: Path) -> None:
    tok = token(gw, "storage.create:/local/up")
    target = up / "f.bin"

    def body() -> Iterator[bytes]:
        yield b"x" * 65536
        # The gateway's writer exists: it has looked for the target (found none) already.
        wait_for(lambda: bool(staging_files(gw.data)), "the gateway's staging file")
        target.write_bytes(b"first come")
        yield b"y" * 65536

    r = httpx.put(gw.api + "/path/local/up/f.bin", content=body(), headers={**bearer(tok), **OCTET})
    is_error(r, 409, 40901)
    assert target.read_bytes() == b"first come"
    assert staging_files(gw.data) == []


def test_webdav_put_keeps_a_file_that_appeared_midway(gw: Running, up: Path) -> None:
    """The WebDAV door's PUT is the same streamed write: the same rule."""
    tok = token(gw, "storage.create:/local/up")
    target = up / "dav.bin"

    def body() -> Iterator[bytes]:
        yield b"x" * 65536
        wait_for(lambda: bool(staging_files(gw.data)), "the gateway's staging file")
        target.write_bytes(b"first come")
        yield b"y" * 65536

    r = httpx.put(f"{gw.url}/webdav/local/up/dav.bin", content=body(), headers=bearer(tok))
    assert r.status_code == 409, r.text
    assert target.read_bytes() == b"first come"
    assert staging_files(gw.data) == []


def test_raw_put_with_modify_still_replaces(gw: Running, up: Path) -> None:
    """The other side of the rule: a token that may modify replaces as before."""
    tok = token(gw, "storage.modify:/local/up")
    (up / "f.bin").write_bytes(b"old")
    r = httpx.put(gw.api + "/path/local/up/f.bin", content=b"new", headers={**bearer(tok), **OCTET})
    assert r.status_code == 201, r.text
    assert (up / "f.bin").read_bytes() == b"new"


def test_upload_data_file_keeps_a_file_that_appeared_midway(gw: Running, up: Path) -> None:
    tok = token(gw, "storage.create:/local/up")
    target = up / "f.bin"
    # Large enough that writing it outlasts the watcher's reaction by far.
    raw = os.urandom(24 * MIB)
    appear = When(
        lambda: bool(staging_files(gw.data)),
        lambda: write(target, b"first come"),
        "the gateway's staging file",
    )
    r = httpx.put(
        gw.api + "/path/local/up/f.bin",
        content=upload_data(raw),
        headers={**bearer(tok), **CARMIN_JSON},
        timeout=60,
    )
    appear.check()
    is_error(r, 409, 40901)
    assert target.read_bytes() == b"first come"
    assert staging_files(gw.data) == []


def test_archive_keeps_a_file_that_appeared_midway(gw: Running, up: Path) -> None:
    """The entry in flight is created by someone else: the unpacking fails, removes the
    files it wrote, and keeps the folder that now holds someone else's file."""
    tok = token(gw, "storage.create:/local/up")
    archive = tar_gz({"a.txt": b"alpha", "big.bin": os.urandom(24 * MIB)})
    target = up / "unpacked"

    def big_in_flight() -> bool:
        return (target / "a.txt").exists() and bool(staging_files(gw.data))

    appear = When(
        big_in_flight,
        lambda: write(target / "big.bin", b"first come"),
        "big.bin's staging file",
    )
    r = httpx.put(
        gw.api + "/path/local/up/unpacked",
        content=upload_data(archive, "Archive"),
        headers={**bearer(tok), **CARMIN_JSON},
        timeout=60,
    )
    appear.check()
    is_error(r, 409, 40901)
    assert (target / "big.bin").read_bytes() == b"first come"
    assert sorted(p.name for p in target.iterdir()) == ["big.bin"]  # a.txt rolled back
    assert staging_files(gw.data) == []


def test_archive_onto_an_existing_file_inside_is_refused(gw: Running, up: Path) -> None:
    """The target folder appears (with a file) after the token's check: mkdir finds it,
    and no entry replaces the file."""
    tok = token(gw, "storage.create:/local/up")
    archive = tar_gz({"keep.txt": b"from the archive"})
    target = up / "t"
    target.mkdir()
    (target / "keep.txt").write_bytes(b"mine")
    r = httpx.put(
        gw.api + "/path/local/up/t",
        content=upload_data(archive, "Archive"),
        headers={**bearer(tok), **CARMIN_JSON},
    )
    assert r.status_code == 403, r.text  # unpacking into an existing folder needs modify
    assert (target / "keep.txt").read_bytes() == b"mine"


def test_mkdir_on_a_name_taken_is_refused(gw: Running, up: Path) -> None:
    tok = token(gw, "storage.create:/local/up")
    (up / "taken").write_bytes(b"a file")
    is_error(httpx.put(gw.api + "/path/local/up/taken", headers=bearer(tok)), 409, 40901)
    assert (up / "taken").read_bytes() == b"a file"


# --- SeaweedFS ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """boto3 on the bucket, with the service keys: to look behind the gateway's back."""
    with running_testbed("seaweedfs"):
        adapter = create_s3({"endpoint_url": ENDPOINT, "bucket": BUCKET})
        keys = {"accessKey": "testkey", "secretKey": "testsecret"}
        client = adapter.bind(Credential("access_secret", keys)).client  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            client.create_bucket(Bucket=BUCKET)
        yield client
        adapter.close()


@pytest.fixture(scope="module")
def s3gw(s3: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    prefix = f"co-{uuid.uuid4().hex[:10]}"
    options = {
        "endpoint_url": ENDPOINT,
        "bucket": BUCKET,
        "prefix": prefix,
        "multipart_threshold": 5 * MIB,
        "part_size": 5 * MIB,
        "access_key": "testkey",
        "secret_key": "testsecret",
    }
    mount = MountConfig(
        name="svc", type="s3", options=options, credential_source="service", redirect=False
    )
    settings = local_settings(tmp_path_factory.mktemp("co"), mounts=(mount,))
    with running(settings) as r:
        yield r
    adapter = create_s3({**options, "prefix": ""})
    with contextlib.suppress(NotFound):
        adapter.bind(None).delete(prefix)
    adapter.close()


def _key(gw: Running, path: str) -> str:
    return f"{gw.settings.mounts[0].options['prefix']}/{path}"


def _uploading(s3: Any, key: str) -> bool:
    uploads = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    return any(u["Key"] == key for u in uploads)


def _content(s3: Any, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.fixture
def s3dir(s3gw: Running) -> str:
    name = f"d{uuid.uuid4().hex[:8]}"
    with s3gw.client() as c:
        assert c.put(f"/path/svc/{name}").status_code == 201
    return name


def test_s3_raw_put_keeps_an_object_that_appeared_midway(
    s3gw: Running, s3: Any, s3dir: str
) -> None:
    tok = token(s3gw, f"storage.create:/svc/{s3dir}")
    key = _key(s3gw, f"{s3dir}/f.bin")

    def body() -> Iterator[bytes]:
        yield os.urandom(6 * MIB)  # past the multipart threshold: the upload opens
        wait_for(lambda: _uploading(s3, key), "the gateway's multipart upload")
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"first come")
        yield b"tail"

    r = httpx.put(
        f"{s3gw.api}/path/svc/{s3dir}/f.bin",
        content=body(),
        headers={**bearer(tok), **OCTET},
        timeout=60,
    )
    is_error(r, 409, 40901)
    assert _content(s3, key) == b"first come"
    assert not _uploading(s3, key)


def test_s3_upload_data_file_keeps_an_object_that_appeared_midway(
    s3gw: Running, s3: Any, s3dir: str
) -> None:
    tok = token(s3gw, f"storage.create:/svc/{s3dir}")
    key = _key(s3gw, f"{s3dir}/f.bin")
    appear = When(
        lambda: _uploading(s3, key),
        lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"first come"),
        "the gateway's multipart upload",
    )
    r = httpx.put(
        f"{s3gw.api}/path/svc/{s3dir}/f.bin",
        content=upload_data(os.urandom(16 * MIB)),
        headers={**bearer(tok), **CARMIN_JSON},
        timeout=60,
    )
    appear.check()
    is_error(r, 409, 40901)
    assert _content(s3, key) == b"first come"
    assert not _uploading(s3, key)


def test_s3_archive_keeps_an_object_that_appeared_midway(
    s3gw: Running, s3: Any, s3dir: str
) -> None:
    tok = token(s3gw, f"storage.create:/svc/{s3dir}")
    key = _key(s3gw, f"{s3dir}/unpacked/big.bin")
    archive = tar_gz({"a.txt": b"alpha", "big.bin": os.urandom(16 * MIB)})
    appear = When(
        lambda: _uploading(s3, key),
        lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"first come"),
        "big.bin's multipart upload",
    )
    r = httpx.put(
        f"{s3gw.api}/path/svc/{s3dir}/unpacked",
        content=upload_data(archive, "Archive"),
        headers={**bearer(tok), **CARMIN_JSON},
        timeout=60,
    )
    appear.check()
    is_error(r, 409, 40901)
    assert _content(s3, key) == b"first come"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=_key(s3gw, f"{s3dir}/unpacked/"))
    names = sorted(o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", []))
    assert "a.txt" not in names and "big.bin" in names
