"""The local folder's md5 cache (an extended attribute keyed by size and mtime) crossed with
changes to the file under it: a file changed in any way that moves its size or mtime gets
a fresh digest, through the adapter and through the gateway's ``action=md5``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from adapters.posix import MD5_XATTR, PosixStorage
from tests.server import Running, local_settings, running


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def storage(tmp_path: Path) -> PosixStorage:
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, MD5_XATTR, b"x")
    except OSError as exc:  # the cache cannot exist here: nothing to test
        pytest.skip(f"no user extended attributes on {tmp_path}: {exc}")
    probe.unlink()
    return PosixStorage(tmp_path)


def write(storage: PosixStorage, name: str, data: bytes) -> None:
    w = storage.open_write(name, len(data))
    w.write(data)
    w.commit()


def test_the_digest_is_cached_on_upload(storage: PosixStorage) -> None:
    write(storage, "f", b"first")
    full = Path(storage.root) / "f"
    assert os.getxattr(full, MD5_XATTR).decode().endswith(":" + md5(b"first"))
    # The cache is what answers: a planted digest for the same size and mtime comes back.
    st = full.stat()
    os.setxattr(full, MD5_XATTR, f"{st.st_size}:{st.st_mtime_ns}:{'e' * 32}".encode())
    assert storage.checksum("f") == "e" * 32


def test_same_size_new_mtime_is_hashed_again(storage: PosixStorage) -> None:
    write(storage, "f", b"first")
    full = Path(storage.root) / "f"
    before = full.stat().st_mtime_ns
    full.write_bytes(b"secnd")  # same size
    os.utime(full, ns=(before + 1_000_000, before + 1_000_000))
    assert storage.checksum("f") == md5(b"secnd")


def test_new_size_same_mtime_is_hashed_again(storage: PosixStorage) -> None:
    write(storage, "f", b"first")
    full = Path(storage.root) / "f"
    st = full.stat()
    full.write_bytes(b"first and more")
    os.utime(full, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert storage.checksum("f") == md5(b"first and more")


def test_a_malformed_cache_entry_is_ignored(storage: PosixStorage) -> None:
    write(storage, "f", b"first")
    full = Path(storage.root) / "f"
    st = full.stat()
    for bad in (b"garbage", f"{st.st_size}:{st.st_mtime_ns}:short".encode(), b"1:2:3:4"):
        os.setxattr(full, MD5_XATTR, bad)
        assert storage.checksum("f") == md5(b"first")


def test_through_the_gateway(tmp_path: Path) -> None:
    with running(local_settings(tmp_path)) as gw, gw.client() as client:
        _through_the_gateway(gw, client)


def _through_the_gateway(gw: Running, client: httpx.Client) -> None:
    assert client.put("/path/local/f", content=b"v1", headers={"Content-Type": "x/y"}).is_success
    assert client.get("/path/local/f?action=md5").json() == {"md5": md5(b"v1")}
    full = gw.data / "f"
    st = full.stat()
    full.write_bytes(b"v2")  # same size, changed behind the gateway's back
    os.utime(full, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))
    assert client.get("/path/local/f?action=md5").json() == {"md5": md5(b"v2")}


def test_an_upload_through_the_gateway_keeps_the_digests_md5_in_the_xattr(
    tmp_path: Path,
) -> None:
    # The gateway's digests hand their md5 to the writer (no second pass): a several-block
    # upload still leaves the right one beside the file.
    body = os.urandom(3 * 1024 * 1024 + 5)
    with running(local_settings(tmp_path)) as gw, gw.client() as client:
        r = client.put("/path/local/big", content=body, headers={"Content-Type": "x/y"})
        assert r.status_code == 201
        kept = os.getxattr(gw.data / "big", MD5_XATTR).decode()
        assert kept.endswith(":" + md5(body))
