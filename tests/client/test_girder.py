"""The client against a girder mount on a real Girder (scripts/testbeds/girder.sh):
``girder:/collection/…`` paths and VIP's ``girder:/name?apiurl=…&fileId=…&token=…``."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import girder_client
import pytest

from gateway.client import Client, NotFoundError
from gateway.config import MountConfig
from tests.server import Running, local_settings, running

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "testbeds" / "girder.sh"
ENV = REPO / ".testbeds" / "girder" / "env.json"


@pytest.fixture(scope="module")
def girder_env() -> Iterator[dict[str, Any]]:
    was_running = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode
    subprocess.run(["bash", str(SCRIPT), "start"], check=True, timeout=300, capture_output=True)
    yield json.loads(ENV.read_text())
    if was_running != 0:  # leave a server someone else started alone
        subprocess.run(["bash", str(SCRIPT), "stop"], check=True, timeout=60, capture_output=True)


@pytest.fixture
def folder(
    girder_env: dict[str, Any],
) -> Iterator[tuple[girder_client.GirderClient, dict[str, Any]]]:
    gc = girder_client.GirderClient(apiUrl=girder_env["api_url"])
    gc.authenticate(apiKey=girder_env["admin"]["api_key"])
    name = f"client-{uuid.uuid4().hex[:10]}"
    doc = gc.createFolder(girder_env["collection_id"], name, parentType="collection")
    yield gc, {**doc, "root": f"/collection/{girder_env['collection']}/{name}"}
    gc.delete(f"folder/{doc['_id']}")


@pytest.fixture
def ggw(
    tmp_path: Path, girder_env: dict[str, Any], folder: tuple[Any, dict[str, Any]]
) -> Iterator[Running]:
    mount = MountConfig(
        "gi",
        "girder",
        {
            "api_url": girder_env["api_url"],
            "root": folder[1]["root"],
            "api_key": girder_env["admin"]["api_key"],
        },
        credential_source="service",
    )
    (tmp_path / "data").mkdir()
    local = MountConfig("local", "posix", {"root": str(tmp_path / "data")})
    with running(local_settings(tmp_path, mounts=(local, mount))) as r:
        yield r


def test_girder_path_and_vip_uris(
    ggw: Running,
    girder_env: dict[str, Any],
    folder: tuple[girder_client.GirderClient, dict[str, Any]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gc, doc = folder
    body = b"girder input\n" * 1000
    sub = gc.createFolder(doc["_id"], "sub")
    f = gc.uploadFile(sub["_id"], io.BytesIO(body), "in.txt", len(body), parentType="folder")
    girder_token = gc.post("api_key/token", parameters={"key": girder_env["admin"]["api_key"]})[
        "authToken"
    ]["token"]
    api = girder_env["api_url"]
    vip = f"girder:/in.txt?apiurl={api}&fileId={f['_id']}&token={girder_token}"
    with caplog.at_level(logging.DEBUG), Client(ggw.api, apikey=ggw.key) as c:
        assert c.resolve(f"girder:{doc['root']}/sub/in.txt").path == "/gi/sub/in.txt"
        assert c.resolve(f"girder:{doc['root']}/sub?apiurl={api}").path == "/gi/sub"
        assert c.resolve(vip).path == "/gi/sub/in.txt"
        [res] = c.get(vip, tmp_path / "vip.txt")
        assert (tmp_path / "vip.txt").read_bytes() == body
        assert res.checksum == "sha-256"  # kept by the gateway: Girder stores none
        [up] = c.put(tmp_path / "vip.txt", f"girder:{doc['root']}/sub/copy.txt")
        assert up.path == "/gi/sub/copy.txt"
        assert [e.name for e in c.ls(f"girder:{doc['root']}/sub")] == ["copy.txt", "in.txt"]
        with pytest.raises(NotFoundError):
            c.resolve(f"girder:/x?apiurl={api}&fileId=000000000000000000000000&token=t")
    assert girder_token not in caplog.text
