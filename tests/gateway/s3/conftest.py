"""The S3 gateway tests' fixtures: a gateway (module-scoped) with mounts on a fresh prefix
of the real SeaweedFS (scripts/testbeds/seaweedfs.sh), each user's credential stored the
way VIP stores it, and a boto3 client to look behind the gateway's back."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.base import Credential, NotFound
from adapters.s3 import create
from gateway.config import MountConfig
from tests.gateway.s3.helpers import BUCKET, ENDPOINT, KEYS, s3_mount
from tests.server import Running, local_settings, running
from tests.testbeds import running_testbed


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A boto3 client on the bucket, to look behind the gateway's back."""
    with running_testbed("seaweedfs"):
        adapter = create({"endpoint_url": ENDPOINT, "bucket": BUCKET})
        client = adapter.bind(Credential("access_secret", dict(KEYS))).client  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):  # already there: fine
            client.create_bucket(Bucket=BUCKET)
        yield client
        adapter.close()


@pytest.fixture(scope="module")
def prefix(s3: Any) -> Iterator[str]:
    name = f"gw-{uuid.uuid4().hex[:10]}"
    yield name
    adapter = create({"endpoint_url": ENDPOINT, "bucket": BUCKET})
    storage = adapter.bind(Credential("access_secret", dict(KEYS)))
    for folder in (name, name + "-svc"):
        with contextlib.suppress(NotFound):
            storage.delete(folder)
    adapter.close()


@pytest.fixture(scope="module")
def gw(prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with socket.socket() as sock:  # a port nothing listens on: the "endpoint down" mount
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    service = {"access_key": "testkey", "secret_key": "testsecret"}
    mounts = (
        s3_mount("s3", prefix, credential_source="user"),
        s3_mount("svc", prefix + "-svc", credential_source="service", **service),
        s3_mount("bad", prefix, credential_source="user"),
        s3_mount("noredir", prefix, credential_source="service", redirect=False, **service),
        MountConfig(
            name="down",
            type="s3",
            options={
                "endpoint_url": f"http://127.0.0.1:{dead_port}",
                "bucket": BUCKET,
                "max_attempts": 1,
                "connect_timeout": 1,
                **service,
            },
            credential_source="service",
        ),
    )
    settings = local_settings(tmp_path_factory.mktemp("s3gw"), mounts=mounts)
    with running(settings) as r:
        for mount, secret in (("s3", "testsecret"), ("bad", "not-the-secret")):
            cred = {"kind": "access_secret", "accessKey": "testkey", "secretKey": secret}
            body = {"storageIdentifier": mount, "credential": cred}
            stored = httpx.put(r.api + "/user/externalKeys", json=body, headers={"apikey": r.key})
            assert stored.status_code == 200, stored.text
        yield r


@pytest.fixture
def folder(client: httpx.Client) -> str:
    """A fresh directory in the s3 mount (made through the gateway: an empty PUT)."""
    name = f"d{uuid.uuid4().hex[:8]}"
    assert client.put(f"/path/s3/{name}").status_code == 201
    return name
