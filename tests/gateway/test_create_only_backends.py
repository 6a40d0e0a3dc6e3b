"""The create-only race of tests/gateway/test_create_only.py on the other backends the test
servers provide: XRootD over root:// and over http (gfal), the iRODS protocol test server,
and Girder. Every route that writes (raw PUT, UploadData File, Archive) uploads while the
target is created behind the gateway's back, after the gateway's upload has visibly begun
on the storage; the target must keep its bytes.

What "visibly begun" is, per backend: the adapter's hidden temporary upload in the target's
folder (gfal, iRODS), a pending upload in Girder's ``system/uploads``.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import MountConfig
from tests.gateway.helpers import When, bearer, is_error, tar_gz, token, upload_data, wait_for
from tests.server import Running, local_settings, running
from tests.testbeds import REPO, run_testbed, running_testbed

MIB = 1024 * 1024
OCTET = {"Content-Type": "application/octet-stream"}
CARMIN_JSON = {"Content-Type": "application/carmin+json"}
FIRST = b"first come"


@dataclass
class Backend:
    """One mount, and ways to look at and change its storage behind the gateway's back
    (paths are relative to the mount's root)."""

    gw: Running
    mount: str
    uploading: Callable[[str], bool]  # a folder holds one of the gateway's pending uploads
    create: Callable[[str, bytes], None]
    read: Callable[[str], bytes]
    names: Callable[[str], set[str]]  # a folder's visible entries


# --- XRootD (gfal) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xrootd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Path]]:
    with running_testbed("xrootd"):
        export = Path(run_testbed("xrootd", "path").stdout.strip())
        unique = f"co-{uuid.uuid4().hex[:10]}"
        from adapters.gfal import create

        admin = create({"base_url": "root://127.0.0.1:11094//data", "anonymous": True})
        admin.bind(None).mkdir(unique)
        admin.close()
        mounts = tuple(
            MountConfig(
                name, "gfal", {"base_url": f"{url}/{unique}", "anonymous": True, "timeout": 20}
            )
            for name, url in (
                ("grid-root", "root://127.0.0.1:11094//data"),
                ("grid-http", "http://127.0.0.1:11095/data"),
            )
        )
        settings = local_settings(tmp_path_factory.mktemp("co-grid"), mounts=mounts)
        with running(settings) as r:
            yield r, export / unique
        shutil.rmtree(export / unique, ignore_errors=True)


def _on_disk(gw: Running, mount: str, root: Path) -> Backend:
    def uploading(folder: str) -> bool:
        with_names = os.listdir(root / folder) if (root / folder).is_dir() else []
        return any(n.startswith(".fedgate-upload-") and "probe" not in n for n in with_names)

    def create(path: str, data: bytes) -> None:
        (root / path).write_bytes(data)

    def names(folder: str) -> set[str]:
        if not (root / folder).is_dir():
            return set()
        return {n for n in os.listdir(root / folder) if not n.startswith(".")}

    return Backend(gw, mount, uploading, create, lambda p: (root / p).read_bytes(), names)


# --- the iRODS protocol test server ------------------------------------------------------------


@pytest.fixture(scope="module")
def irods(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Any, str]]:
    from irods.session import iRODSSession

    from tests.irods_server import IrodsTestServer

    with IrodsTestServer() as srv:
        root = f"{srv.home('alice')}/co-{uuid.uuid4().hex[:10]}"
        with srv.catalog.lock:
            srv.catalog._new_coll(root, "alice")
        base = {"host": srv.host, "port": srv.port, "zone": srv.zone, "timeout": 10}
        mount = MountConfig("irods", "irods", {**base, "root": root}, credential_source="user")
        session = iRODSSession(
            host=srv.host, port=srv.port, zone=srv.zone, user="alice",
            password=srv.users["alice"],
        )  # fmt: skip
        settings = local_settings(tmp_path_factory.mktemp("co-irods"), mounts=(mount,))
        try:
            with running(settings) as r:
                alice = {"kind": "user_password", "user": "alice", "password": srv.users["alice"]}
                put = httpx.put(
                    r.api + "/user/externalKeys",
                    json={"storageIdentifier": "irods", "credential": alice},
                    headers={"apikey": r.key},
                )
                assert put.status_code == 200, put.text
                yield r, session, root
        finally:
            session.cleanup()


def _irods_backend(gw: Running, session: Any, root: str) -> Backend:
    def objects(folder: str) -> list[str]:
        return [o.name for o in session.collections.get(f"{root}/{folder}").data_objects]

    def uploading(folder: str) -> bool:
        try:
            return any(n.startswith(".fedgate-tmp-") for n in objects(folder))
        except Exception:  # the folder itself is not there yet
            return False

    def create(path: str, data: bytes) -> None:
        with session.data_objects.open(f"{root}/{path}", "w") as f:
            f.write(data)

    def read(path: str) -> bytes:
        with session.data_objects.open(f"{root}/{path}", "r") as f:
            return bytes(f.read())

    def names(folder: str) -> set[str]:
        try:
            coll = session.collections.get(f"{root}/{folder}")
        except Exception:  # not there (yet)
            return set()
        found = {o.name for o in coll.data_objects} | {c.name for c in coll.subcollections}
        return {n for n in found if not n.startswith(".")}

    return Backend(gw, "irods", uploading, create, read, names)


# --- Girder -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def girder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Any, str]]:
    import json

    import girder_client

    with running_testbed("girder"):
        env = json.loads((REPO / ".testbeds" / "girder" / "env.json").read_text())
        admin = girder_client.GirderClient(apiUrl=env["api_url"])
        admin.authenticate(apiKey=env["admin"]["api_key"])
        name = f"co-{uuid.uuid4().hex[:10]}"
        doc = admin.createFolder(env["collection_id"], name, parentType="collection")
        root = f"/collection/{env['collection']}/{name}"
        options = {
            "api_url": env["api_url"],
            "root": root,
            "api_key": env["admin"]["api_key"],
            # Girder's smallest chunks: an upload spans several requests, so the race's
            # window is wider than the round trip that takes the name behind its back.
            "upload_chunk_mib": 5,
        }
        mount = MountConfig("girder", "girder", options, credential_source="service")
        settings = local_settings(tmp_path_factory.mktemp("co-girder"), mounts=(mount,))
        try:
            with running(settings) as r:
                yield r, admin, root
        finally:
            admin.delete(f"folder/{doc['_id']}")


def _girder_backend(gw: Running, admin: Any, root: str) -> Backend:
    def folder_id(folder: str) -> str | None:
        try:
            return str(admin.resourceLookup(f"{root}/{folder}")["_id"])
        except Exception:  # not there (yet)
            return None

    def uploading(folder: str) -> bool:
        fid = folder_id(folder)
        return fid is not None and any(
            str(u.get("parentId")) == fid for u in admin.get("system/uploads")
        )

    def create(path: str, data: bytes) -> None:
        folder, name = path.rsplit("/", 1)
        fid = folder_id(folder)
        assert fid is not None
        # The name is taken by the item, in one request; its bytes follow.
        item = admin.createItem(fid, name)
        admin.uploadFile(item["_id"], io.BytesIO(data), name, len(data), parentType="item")

    def read(path: str) -> bytes:
        folder, name = path.rsplit("/", 1)
        items = list(admin.listItem(folder_id(folder), name=name))
        assert len(items) == 1, items
        (f,) = list(admin.listFile(items[0]["_id"]))
        out = io.BytesIO()
        admin.downloadFile(f["_id"], out)
        return out.getvalue()

    def names(folder: str) -> set[str]:
        fid = folder_id(folder)
        if fid is None:
            return set()
        return {i["name"] for i in admin.listItem(fid)} | {
            f["name"] for f in admin.listFolder(fid, parentFolderType="folder")
        }

    return Backend(gw, "girder", uploading, create, read, names)


# --- the races ----------------------------------------------------------------------------------


@pytest.fixture(params=["grid-root", "grid-http", "irods", "girder"])
def backend(request: pytest.FixtureRequest) -> Backend:
    name = str(request.param)
    if name.startswith("grid-"):
        gw, root = request.getfixturevalue("xrootd")
        return _on_disk(gw, name, root)
    if name == "irods":
        return _irods_backend(*request.getfixturevalue("irods"))
    return _girder_backend(*request.getfixturevalue("girder"))


@pytest.fixture
def folder(backend: Backend) -> str:
    name = f"d{uuid.uuid4().hex[:8]}"
    with backend.gw.client() as c:
        assert c.put(f"/path/{backend.mount}/{name}").status_code == 201
    return name


def _creator(b: Backend, folder: str) -> dict[str, str]:
    return bearer(token(b.gw, f"storage.create:/{b.mount}/{folder}"))


def test_raw_put_keeps_a_file_that_appeared_midway(backend: Backend, folder: str) -> None:
    b = backend
    half = os.urandom(MIB)

    def body() -> Iterator[bytes]:
        yield half
        wait_for(lambda: b.uploading(folder), "the gateway's upload on the storage")
        b.create(f"{folder}/f.bin", FIRST)
        yield half

    r = httpx.put(
        f"{b.gw.api}/path/{b.mount}/{folder}/f.bin",
        content=body(),
        # A declared length: the upload streams to the storage as it arrives (gfal's
        # http PUT and Girder's chunks need the size up front).
        headers={**_creator(b, folder), **OCTET, "Content-Length": str(2 * MIB)},
        timeout=60,
    )
    is_error(r, 409, 40901)
    assert b.read(f"{folder}/f.bin") == FIRST
    wait_for(lambda: b.names(folder) == {"f.bin"}, "no other entry left in the folder")


def _raced(b: Backend, pending: Callable[[], bool], where: str, action: Callable[[], None]) -> When:
    """Run ``action`` once ``pending()`` holds; ``raced`` then says whether the gateway's
    upload was still pending after it (a race really made), else the attempt proves
    nothing: the gateway had finished first, and the storage rightly kept both files or
    renamed the late one."""

    def act() -> None:
        action()
        when.raced = b.uploading(where)

    when = When(pending, act, "the gateway's upload on the storage")
    when.raced = False
    return when


def _attempts(b: Backend, folder: str) -> Iterator[str]:
    """Fresh folders for up to five tries; the test fails if no try made the race."""
    for i in range(5):
        sub = f"{folder}/try{i}"
        with b.gw.client() as c:
            assert c.put(f"/path/{b.mount}/{sub}").status_code == 201
        yield sub
    raise AssertionError("five tries and the gateway always finished before the race")


def _try_file(b: Backend, folder: str, where: str) -> bool:
    appear = _raced(b, lambda: b.uploading(where), where, lambda: b.create(f"{where}/f.bin", FIRST))
    r = httpx.put(
        f"{b.gw.api}/path/{b.mount}/{where}/f.bin",
        content=upload_data(os.urandom(24 * MIB)),
        headers={**_creator(b, folder), **CARMIN_JSON},
        timeout=120,
    )
    appear.check()
    if not appear.raced:
        return False
    is_error(r, 409, 40901)
    assert b.read(f"{where}/f.bin") == FIRST
    wait_for(lambda: b.names(where) == {"f.bin"}, "no other entry left in the folder")
    return True


def test_upload_data_file_keeps_a_file_that_appeared_midway(backend: Backend, folder: str) -> None:
    for where in _attempts(backend, folder):
        if _try_file(backend, folder, where):
            return


def _try_archive(b: Backend, folder: str, where: str, archive: bytes) -> bool:
    target = f"{where}/unpacked"

    def big_in_flight() -> bool:  # a.txt is done: the pending upload is big.bin's
        return "a.txt" in b.names(target) and b.uploading(target)

    appear = _raced(b, big_in_flight, target, lambda: b.create(f"{target}/big.bin", FIRST))
    r = httpx.put(
        f"{b.gw.api}/path/{b.mount}/{target}",
        content=upload_data(archive, "Archive"),
        headers={**_creator(b, folder), **CARMIN_JSON},
        timeout=120,
    )
    appear.check()
    if not appear.raced:
        return False
    is_error(r, 409, 40901)
    assert b.read(f"{target}/big.bin") == FIRST
    # a.txt is rolled back; the folder stays, it holds someone else's file.
    wait_for(lambda: b.names(target) == {"big.bin"}, "the unpacking rolled back")
    return True


def test_archive_keeps_a_file_that_appeared_midway(backend: Backend, folder: str) -> None:
    archive = tar_gz({"a.txt": b"alpha", "big.bin": os.urandom(24 * MIB)})
    for where in _attempts(backend, folder):
        if _try_archive(backend, folder, where, archive):
            return
