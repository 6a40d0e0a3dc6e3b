"""One fixtures class per backend, shared by every suite that runs on all of them (the
adapter conformance suite, tests/adapters/conformance.py, and the gateway's CARMIN flow,
tests/gateway/carmin_flow.py), as fsspec's abstract tests take one fixtures class per
filesystem::

    class TestS3Conformance(S3Fixtures, AdapterConformance): ...
    class TestS3Carmin(S3Fixtures, CarminFlow): ...

Each class gives a ``space`` fixture: a fresh, empty folder on the backend's real server
(SeaweedFS, Girder, XRootD over root:// and over http://, the iRODS protocol test
server, a local folder), the adapter options whose root is that folder, and the user
credential that reaches it. Servers are started by the project's own scripts
(scripts/testbeds/<name>.sh, through tests/testbeds.py; one someone else started is left
running) once per test class; each ``space`` is removed after its test, and the S3 one
checks that nothing is left behind."""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.base import Adapter, Credential, NotFound
from adapters.registry import create_adapter
from tests.irods_server import IrodsTestServer
from tests.testbeds import REPO, run_testbed, running_testbed

MIB = 1024 * 1024

S3_ENDPOINT = "http://127.0.0.1:8333"
S3_BUCKET = "fedgate-tests"
S3_ADMIN = Credential("access_secret", {"accessKey": "testkey", "secretKey": "testsecret"})
# Small parts: a few MiB of test data already takes the multipart path.
S3_SMALL_PARTS = {"multipart_threshold": 5 * MIB, "part_size": 5 * MIB}

GIRDER_ENV = REPO / ".testbeds" / "girder" / "env.json"
GIRDER_PAGE = 50  # the adapter's page size in these tests: listings span pages early

XROOTD_ROOT_URL = "root://127.0.0.1:11094//data"
XROOTD_HTTP_URL = "http://127.0.0.1:11095/data"
# XRootD here has no token authorisation: the token is sent and ignored.
GFAL_TOKEN = "test-bearer-Zm9vYmFy.c2VjcmV0"


def fresh_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@dataclass
class Space:
    """A fresh, empty folder on a backend, as a mount would see it."""

    type: str  # the mount type (adapters/registry.py)
    options: dict[str, Any]  # adapter options whose root is the folder
    # A user's credential for it; None: the options carry what the adapter needs.
    credential: Credential | None
    # What a suite may need beyond the adapter (the folder on the server's disk...).
    extra: dict[str, Any] = field(default_factory=dict)

    def adapter(self) -> Adapter:
        return create_adapter(self.type, self.options)


class PosixFixtures:
    @pytest.fixture
    def space(self, tmp_path: Path) -> Space:
        root = tmp_path / "space"
        root.mkdir()
        return Space("posix", {"root": str(root)}, None)


class S3Fixtures:
    @pytest.fixture(scope="class")
    def s3_admin(self) -> Iterator[Any]:
        """A view at the bucket root, for setup and for looking behind the adapter."""
        with running_testbed("seaweedfs"):
            adapter = create_adapter("s3", {"endpoint_url": S3_ENDPOINT, "bucket": S3_BUCKET})
            storage: Any = adapter.bind(S3_ADMIN)
            try:
                storage.client.create_bucket(Bucket=S3_BUCKET)
            except Exception as exc:
                code = getattr(exc, "response", {}).get("Error", {}).get("Code")
                assert code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"), exc
            yield storage
            adapter.close()

    @pytest.fixture
    def space(self, s3_admin: Any) -> Iterator[Space]:
        prefix = fresh_name()
        options = {
            "endpoint_url": S3_ENDPOINT,
            "bucket": S3_BUCKET,
            "prefix": prefix,
            **S3_SMALL_PARTS,
        }
        yield Space("s3", options, S3_ADMIN, {"prefix": prefix})
        with contextlib.suppress(NotFound):
            s3_admin.delete(prefix)
        # The adapter's recursive delete must forget a whole tree, folders included.
        assert s3_leftovers(s3_admin, prefix) == []


def s3_leftovers(admin: Any, prefix: str) -> list[str]:
    """Keys and folders (SeaweedFS keeps empty ones) left under ``prefix``."""
    page = admin.client.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix, Delimiter="/")
    return [o["Key"] for o in page.get("Contents", [])] + [
        p["Prefix"] for p in page.get("CommonPrefixes", [])
    ]


class GirderFixtures:
    @pytest.fixture(scope="class")
    def girder_env(self) -> Iterator[dict[str, Any]]:
        """What scripts/testbeds/girder.sh set up: URL, users' API keys, the collection."""
        with running_testbed("girder"):
            yield json.loads(GIRDER_ENV.read_text())

    @pytest.fixture
    def space(self, girder_env: dict[str, Any]) -> Iterator[Space]:
        import girder_client

        admin = girder_client.GirderClient(apiUrl=girder_env["api_url"])
        admin.authenticate(apiKey=girder_env["admin"]["api_key"])
        name = fresh_name()
        doc = admin.createFolder(girder_env["collection_id"], name, parentType="collection")
        options = {
            "api_url": girder_env["api_url"],
            "root": f"/collection/{girder_env['collection']}/{name}",
            "page_size": GIRDER_PAGE,
            # Girder's minimum chunk (the default is 64 MiB): a few MiB of test data then
            # takes several chunks, and blocks straddle chunk boundaries.
            "upload_chunk_mib": 5,
            "native_tokens": True,
        }
        alice = Credential("apikey", {"apiKey": girder_env["alice"]["api_key"]})
        yield Space("girder", options, alice, {"folder": doc})
        admin.delete(f"folder/{doc['_id']}")


class GfalRootFixtures:
    """An XRootD export over root:// (gfal2's own file calls)."""

    base_url = XROOTD_ROOT_URL

    @pytest.fixture(scope="class")
    def xrootd_data(self) -> Iterator[Path]:
        """The running daemon's export folder on disk (for fast bulk setup)."""
        with running_testbed("xrootd"):
            yield Path(run_testbed("xrootd", "path").stdout.strip())

    @pytest.fixture
    def space(self, xrootd_data: Path) -> Iterator[Space]:
        name = fresh_name()
        # Created through the SE, so that the daemon owns it.
        admin = create_adapter("gfal", {"base_url": XROOTD_ROOT_URL, "anonymous": True})
        admin.bind(None).mkdir(name)
        admin.close()
        options = {"base_url": f"{self.base_url}/{name}", "timeout": 20}
        token = Credential("bearer", {"token": GFAL_TOKEN})
        yield Space("gfal", options, token, {"on_disk": xrootd_data / name})
        shutil.rmtree(xrootd_data / name, ignore_errors=True)


class GfalHttpFixtures(GfalRootFixtures):
    """The same daemon over XrdHttp (the urllib3 data path, adapters/gfal/http.py)."""

    base_url = XROOTD_HTTP_URL


class IrodsFixtures:
    """The iRODS protocol test server (tests/irods_server): no real iRODS can be
    installed on the test machines."""

    @pytest.fixture(scope="class")
    def irods_server(self) -> Iterator[IrodsTestServer]:
        with IrodsTestServer() as srv:
            yield srv

    @pytest.fixture
    def space(self, irods_server: IrodsTestServer) -> Space:
        root = f"{irods_server.home('alice')}/{fresh_name()}"
        with irods_server.catalog.lock:
            irods_server.catalog._new_coll(root, "alice")
        options = {
            "host": irods_server.host,
            "port": irods_server.port,
            "zone": irods_server.zone,
            "root": root,
            "timeout": 10,
        }
        alice = Credential(
            "user_password", {"user": "alice", "password": irods_server.users["alice"]}
        )
        return Space("irods", options, alice, {"server": irods_server})


ALL_BACKENDS = (
    PosixFixtures,
    S3Fixtures,
    GirderFixtures,
    GfalRootFixtures,
    GfalHttpFixtures,
    IrodsFixtures,
)
