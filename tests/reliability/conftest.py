"""Every real backend of the test suite as a gateway mount, with a way to look at the
backend directly (a separate adapter instance, not the gateway's) and to stop/start it.

Backends: posix (always), s3 (SeaweedFS), girder (Girder testbed), irods (the protocol
test server, in-process), gfal (XRootD over root://) and gfalhttp (the same over http).
Testbed servers are started through scripts/testbeds/<name>.sh and left as they were
found."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.registry import create_adapter
from tests.irods_server import IrodsTestServer
from tests.reliability.helpers import Backend
from tests.testbeds import ensure_started, run_testbed

REPO = Path(__file__).resolve().parents[2]


def _fresh() -> str:
    return f"rel-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def s3_backend() -> Iterator[Backend]:
    was_running = ensure_started("seaweedfs")
    opts = {
        "endpoint_url": "http://127.0.0.1:8333",
        "bucket": "fedgate-tests",
        "prefix": _fresh(),
        "access_key": "testkey",
        "secret_key": "testsecret",
        "connect_timeout": 2,
        "read_timeout": 5,
        "max_attempts": 1,
        "multipart_threshold": 5 * 1024 * 1024,
        "part_size": 5 * 1024 * 1024,
    }
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=opts["endpoint_url"],
        aws_access_key_id="testkey",
        aws_secret_access_key="testsecret",
        region_name="us-east-1",
    )
    with contextlib.suppress(Exception):
        client.create_bucket(Bucket=opts["bucket"])
    backend = Backend("s3", "s3", opts, testbed="seaweedfs")
    yield backend
    with contextlib.suppress(Exception):
        backend.storage().delete("")
    if not was_running:
        run_testbed("seaweedfs", "stop")


@pytest.fixture(scope="session")
def girder_backend() -> Iterator[Backend]:
    was_running = ensure_started("girder")
    env = json.loads((REPO / ".testbeds" / "girder" / "env.json").read_text())
    import girder_client

    gc = girder_client.GirderClient(apiUrl=env["api_url"])
    gc.authenticate(apiKey=env["admin"]["api_key"])
    name = _fresh()
    doc = gc.createFolder(env["collection_id"], name, parentType="collection")
    opts = {
        "api_url": env["api_url"],
        "root": f"/collection/{env['collection']}/{name}",
        "api_key": env["admin"]["api_key"],
        "connect_timeout": 2,
        "read_timeout": 60,  # a 32 MiB upload is one slow request to Girder
        "retries": 0,
    }
    yield Backend("girder", "girder", opts, testbed="girder")
    with contextlib.suppress(Exception):
        gc.delete(f"folder/{doc['_id']}")
    if not was_running:
        run_testbed("girder", "stop")


@pytest.fixture(scope="session")
def gfal_backend() -> Iterator[Backend]:
    was_running = ensure_started("xrootd")
    name = _fresh()
    base = "root://127.0.0.1:11094//data"
    create_adapter("gfal", {"base_url": base, "anonymous": True}).bind(None).mkdir(name)
    opts = {"base_url": f"{base}/{name}", "anonymous": True, "timeout": 5}
    yield Backend("gfal", "gfal", opts, testbed="xrootd")
    with contextlib.suppress(Exception):
        create_adapter("gfal", {"base_url": base, "anonymous": True}).bind(None).delete(name)
    if not was_running:
        run_testbed("xrootd", "stop")


@pytest.fixture(scope="session")
def gfal_http_backend(gfal_backend: Backend) -> Backend:
    """The same XRootD folder over XrdHttp: reads and sized uploads take the urllib3 data
    path (adapters/gfal/http.py), not gfal2's file calls."""
    opts = {**gfal_backend.options}
    opts["base_url"] = opts["base_url"].replace("root://127.0.0.1:11094/", "http://127.0.0.1:11095")
    return Backend("gfalhttp", "gfal", opts, testbed="xrootd")


@pytest.fixture(scope="session")
def irods_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp("irods")
    srv = IrodsTestServer(data_dir=str(data_dir)).start()
    root = f"{srv.home('alice')}/{_fresh()}"
    with srv.catalog.lock:
        srv.catalog._new_coll(root, "alice")
    opts = {
        "host": srv.host,
        "port": srv.port,
        "zone": srv.zone,
        "root": root,
        "user": "alice",
        "password": srv.users["alice"],
        "timeout": 5,
    }
    holder = {"server": srv}
    yield Backend("irods", "irods", opts, extra=holder)
    holder["server"].stop()


@pytest.fixture(scope="session")
def remote_backends(
    s3_backend: Backend,
    girder_backend: Backend,
    gfal_backend: Backend,
    gfal_http_backend: Backend,
    irods_backend: Backend,
) -> list[Backend]:
    return [s3_backend, girder_backend, gfal_backend, gfal_http_backend, irods_backend]
