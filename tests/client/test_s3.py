"""The client against an S3 mount on a real SeaweedFS (scripts/testbeds/seaweedfs.sh):
``s3://`` and endpoint URIs, redirect mode (presigned URL, followed without the token),
proxy mode, and a redirected download cut by the storage and resumed."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from gateway.client import Client
from gateway.config import MountConfig
from tests.client.helpers import Proxy, proxy
from tests.gateway.helpers import token
from tests.server import Running, local_settings, running
from tests.testbeds import running_testbed

BUCKET = "fedgate-tests"
KEYS = {"access_key": "testkey", "secret_key": "testsecret"}


@pytest.fixture(scope="module")
def seaweedfs() -> Iterator[int]:
    with running_testbed("seaweedfs"):
        s3 = boto3.client(
            "s3",
            endpoint_url="http://127.0.0.1:8333",
            aws_access_key_id=KEYS["access_key"],
            aws_secret_access_key=KEYS["secret_key"],
            region_name="us-east-1",
        )
        try:
            s3.create_bucket(Bucket=BUCKET)
        except s3.exceptions.ClientError as exc:
            code = exc.response["Error"]["Code"]
            assert code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")
        yield 8333


@pytest.fixture
def storage(seaweedfs: int) -> Iterator[Proxy]:
    """The "third host": a recording proxy in front of SeaweedFS, which the mount (and so
    every presigned URL) names as its endpoint."""
    with proxy(seaweedfs) as p:
        yield p


@pytest.fixture
def s3gw(tmp_path: Path, storage: Proxy) -> Iterator[tuple[Running, str]]:
    prefix = f"client-{uuid.uuid4().hex[:10]}"
    mount = MountConfig(
        "s3",
        "s3",
        {"bucket": BUCKET, "prefix": prefix, "endpoint_url": storage.url, **KEYS},
        credential_source="service",
    )
    (tmp_path / "data").mkdir()
    local = MountConfig("local", "posix", {"root": str(tmp_path / "data")})
    with running(local_settings(tmp_path, mounts=(local, mount))) as r:
        yield r, prefix


def test_redirect_mode_never_sends_the_token_to_the_storage(
    s3gw: tuple[Running, str], storage: Proxy, tmp_path: Path
) -> None:
    gw, prefix = s3gw
    data = os.urandom(2 * 1024 * 1024 + 5)
    (tmp_path / "in.bin").write_bytes(data)
    tok = token(gw, "storage.modify:/s3 storage.read:/s3")
    with Client(gw.api, tok) as c:
        [up] = c.put(tmp_path / "in.bin", f"s3://{BUCKET}/{prefix}/sub/in.bin")
        assert up.path == "/s3/sub/in.bin" and up.checksum == "sha-256"
        forms = [
            f"s3://{BUCKET}/{prefix}/sub/in.bin",
            f"{storage.url}/{BUCKET}/{prefix}/sub/in.bin",  # path-style endpoint URL
            "/s3/sub/in.bin",
        ]
        for i, uri in enumerate(forms):
            [res] = c.get(uri, tmp_path / f"out{i}")
            assert (tmp_path / f"out{i}").read_bytes() == data, uri
            assert res.redirected and res.checksum == "sha-256", uri  # the 307 carried it
        assert [e.name for e in c.ls(f"s3://{BUCKET}/{prefix}/sub")] == ["in.bin"]
    seen = bytes(storage.seen)
    assert b"X-Amz-Signature=" in seen  # the presigned GETs did reach the storage host
    assert tok.encode() not in seen
    assert b"bearer" not in seen.lower() and b"apikey" not in seen.lower()


def test_proxy_mode_streams_through_the_gateway(
    s3gw: tuple[Running, str], storage: Proxy, tmp_path: Path
) -> None:
    gw, prefix = s3gw
    (tmp_path / "f").write_bytes(b"through the gateway")
    tok = token(gw, "storage.modify:/s3 storage.read:/s3")
    with Client(gw.api, tok, redirect=False) as c:
        c.put(tmp_path / "f", "/s3/f")
        [res] = c.get(f"s3://{BUCKET}/{prefix}/f", tmp_path / "g")
    assert not res.redirected and (tmp_path / "g").read_bytes() == b"through the gateway"
    assert b"X-Amz-Signature=" not in bytes(storage.seen)  # only the gateway's own calls


def test_redirected_download_cut_by_the_storage_resumes(
    s3gw: tuple[Running, str], storage: Proxy, tmp_path: Path
) -> None:
    gw, _ = s3gw
    data = os.urandom(3 * 1024 * 1024)
    (tmp_path / "big").write_bytes(data)
    with Client(gw.api, apikey=gw.key) as c:
        c.put(tmp_path / "big", "/s3/big")
    storage.faults.trigger, storage.faults.times, storage.faults.cut_after = (
        b"X-Amz-Signature",
        1,
        1_500_000,
    )
    tok = token(gw, "storage.read:/s3/big")
    with Client(gw.api, tok, backoff=0.01) as c:
        [res] = c.get("/s3/big", tmp_path / "copy")
    assert storage.faults.fired == 1 and res.redirected
    assert 1_000_000 < res.resumed_from < 1_500_000  # cut at 1.5 MB, minus one read chunk
    assert (tmp_path / "copy").read_bytes() == data
