"""The WebDAV backend tests' gateway: one module-scoped gateway with a mount per backend
`make test` starts, each on a fresh folder of its real server (S3 on SeaweedFS, Girder,
a grid SE over root:// and http (XRootD), iRODS on the protocol test server, POSIX).
A test module takes it with ``from tests.webdav.backends import every_backend, irods``."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from adapters.base import Credential, NotFound
from adapters.s3 import create as create_s3
from gateway.config import MountConfig
from tests.irods_server.server import IrodsTestServer
from tests.server import Running, local_settings, running
from tests.testbeds import REPO, running_testbed

MIB = 1024 * 1024
S3 = {"endpoint_url": "http://127.0.0.1:8333", "bucket": "fedgate-tests"}
S3_KEYS = {"access_key": "testkey", "secret_key": "testsecret"}
GIRDER_ENV = REPO / ".testbeds" / "girder" / "env.json"
XROOTD_ROOT = "root://127.0.0.1:11094//data"
XROOTD_HTTP = "http://127.0.0.1:11095/data"
BACKENDS = ["posix", "s3", "girder", "irods", "grid-root", "grid-http"]


@pytest.fixture(scope="module")
def irods() -> Iterator[IrodsTestServer]:
    with IrodsTestServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def every_backend(
    irods: IrodsTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    unique = f"dav-{uuid.uuid4().hex[:10]}"
    tmp = tmp_path_factory.mktemp("dav-backends")
    with contextlib.ExitStack() as stack:
        for name in ("seaweedfs", "girder", "xrootd"):
            stack.enter_context(running_testbed(name))
        girder = json.loads(GIRDER_ENV.read_text())
        s3 = create_s3(S3)
        storage = s3.bind(
            Credential("access_secret", {"accessKey": "testkey", "secretKey": "testsecret"})
        )
        with contextlib.suppress(Exception):  # already there: fine
            storage.client.create_bucket(Bucket=S3["bucket"])  # type: ignore[attr-defined]
        stack.callback(s3.close)
        stack.callback(_quietly, storage.delete, unique)
        grid = create_gfal_folder(unique)
        (tmp / "posix").mkdir()
        mounts = (
            MountConfig("posix", "posix", {"root": str(tmp / "posix")}),
            MountConfig("s3", "s3", {**S3, **S3_KEYS, "prefix": unique,
                                     "multipart_threshold": 5 * MIB, "part_size": 5 * MIB},
                        credential_source="service"),
            MountConfig("girder", "girder", {"api_url": girder["api_url"],
                                             "root": _girder_folder(girder, unique, stack),
                                             "api_key": girder["admin"]["api_key"]},
                        credential_source="service"),
            MountConfig("irods", "irods", {"host": irods.host, "port": irods.port,
                                           "zone": irods.zone, "root": irods.home("alice"),
                                           "user": "alice", "password": irods.users["alice"]},
                        credential_source="service"),
            MountConfig("grid-root", "gfal", {"base_url": f"{XROOTD_ROOT}/{grid}",
                                              "anonymous": True}, credential_source="none"),
            MountConfig("grid-http", "gfal", {"base_url": f"{XROOTD_HTTP}/{grid}",
                                              "anonymous": True}, credential_source="none"),
        )  # fmt: skip
        yield stack.enter_context(running(local_settings(tmp, mounts=mounts)))


def _quietly(fn: Any, *args: Any) -> None:
    with contextlib.suppress(NotFound):
        fn(*args)


def create_gfal_folder(name: str) -> str:
    from adapters.gfal import create

    adapter = create({"base_url": XROOTD_ROOT, "anonymous": True})
    try:
        adapter.bind(None).mkdir(name)
    finally:
        adapter.close()
    return name


def _girder_folder(env: dict[str, Any], name: str, stack: contextlib.ExitStack) -> str:
    import girder_client

    gc = girder_client.GirderClient(apiUrl=env["api_url"])
    gc.authenticate(apiKey=env["admin"]["api_key"])
    doc = gc.createFolder(env["collection_id"], name, parentType="collection")
    stack.callback(gc.delete, f"folder/{doc['_id']}")
    return f"/collection/{env['collection']}/{name}"
