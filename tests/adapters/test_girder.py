"""Girder adapter against a real Girder 5 (scripts/testbeds/girder.sh): the conformance
suite, plus credentials, outages, escaped names, the md5 cache and presigned downloads."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import girder_client
import httpx
import pytest

from adapters.base import (
    AuthenticationFailed,
    BackendUnavailable,
    Credential,
    Features,
    IsADirectory,
    NotFound,
    NotSupported,
    PermissionDenied,
    Storage,
    StorageError,
    features,
)
from adapters.girder import (
    GirderAdapter,
    GirderSettings,
    GirderStorage,
    create,
    resolve_vip_reference,
    vip_uri,
)
from tests.adapters.conformance import AdapterConformance, read, write
from tests.backends import GIRDER_PAGE, GirderFixtures
from tests.testbeds import REPO, running_testbed

ENV = REPO / ".testbeds" / "girder" / "env.json"
PAGE = GIRDER_PAGE  # the page size the conformance fixtures give the adapter


@pytest.fixture(scope="session")
def girder_env() -> Iterator[dict[str, Any]]:
    with running_testbed("girder"):
        yield json.loads(ENV.read_text())


@pytest.fixture(scope="session")
def admin(girder_env: dict[str, Any]) -> girder_client.GirderClient:
    gc = girder_client.GirderClient(apiUrl=girder_env["api_url"])
    gc.authenticate(apiKey=girder_env["admin"]["api_key"])
    return gc


@pytest.fixture
def folder(
    girder_env: dict[str, Any], admin: girder_client.GirderClient
) -> Iterator[dict[str, Any]]:
    """A fresh folder in the test collection; yields its doc plus its Girder path."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    doc = admin.createFolder(girder_env["collection_id"], name, parentType="collection")
    yield {**doc, "root": f"/collection/{girder_env['collection']}/{name}"}
    admin.delete(f"folder/{doc['_id']}")


def alice_cred(env: dict[str, Any]) -> Credential:
    return Credential("apikey", {"apiKey": env["alice"]["api_key"]})


def make_adapter(env: dict[str, Any], root: str, **extra: Any) -> GirderAdapter:
    return create({"api_url": env["api_url"], "root": root, "page_size": PAGE, **extra})


@pytest.fixture
def gstorage(girder_env: dict[str, Any], folder: dict[str, Any]) -> Iterator[GirderStorage]:
    # Girder's minimum chunk (the default is 64 MiB): a few MiB of test data then takes
    # several chunks, and blocks straddle chunk boundaries.
    adapter = make_adapter(girder_env, folder["root"], upload_chunk_mib=5, native_tokens=True)
    storage = adapter.bind(alice_cred(girder_env))
    assert isinstance(storage, GirderStorage)
    yield storage
    adapter.close()


class TestGirderConformance(GirderFixtures, AdapterConformance):
    many_entries = 2 * PAGE + 17  # three pages of items, the adapter's page size is 50

    def populate_many(self, storage: Storage, folder: str, count: int) -> None:
        assert isinstance(storage, GirderStorage)
        gc = girder_client.GirderClient(apiUrl=storage.session.api_url)
        gc.token = storage.session.auth.token(storage.session)
        parent = storage.resolve(folder).id
        with gc.session():
            for i in range(count):  # size 0: Girder creates the file in one call
                gc.post(
                    "file",
                    parameters={"parentType": "folder", "parentId": parent,
                                "name": f"f{i:05d}", "size": 0},
                )  # fmt: skip


# --- credentials and outages --------------------------------------------------------


def test_deleted_api_key_is_authentication_failed(
    girder_env: dict[str, Any], folder: dict[str, Any]
) -> None:
    alice = girder_client.GirderClient(apiUrl=girder_env["api_url"])
    alice.authenticate(girder_env["alice"]["login"], girder_env["alice"]["password"])
    key = alice.post("api_key", parameters={"name": f"doomed-{uuid.uuid4().hex[:6]}"})
    adapter = make_adapter(girder_env, folder["root"])
    storage = adapter.bind(Credential("apikey", {"apiKey": key["key"]}))
    assert storage.stat("").is_dir  # works, and caches a token
    alice.delete(f"api_key/{key['_id']}")  # Girder also deletes the key's tokens
    with pytest.raises(AuthenticationFailed) as info:
        storage.stat("")
    assert key["key"] not in str(info.value)
    with pytest.raises(AuthenticationFailed):  # a fresh view cannot exchange it either
        make_adapter(girder_env, folder["root"]).bind(
            Credential("apikey", {"apiKey": key["key"]})
        ).stat("")
    adapter.close()


def test_deactivated_api_key_is_authentication_failed(
    girder_env: dict[str, Any], folder: dict[str, Any]
) -> None:
    alice = girder_client.GirderClient(apiUrl=girder_env["api_url"])
    alice.authenticate(girder_env["alice"]["login"], girder_env["alice"]["password"])
    key = alice.post("api_key", parameters={"name": f"off-{uuid.uuid4().hex[:6]}"})
    try:
        alice.put(f"api_key/{key['_id']}", parameters={"active": "false"})
        storage = make_adapter(girder_env, folder["root"]).bind(
            Credential("apikey", {"apiKey": key["key"]})
        )
        with pytest.raises(AuthenticationFailed, match="revoked"):
            storage.stat("")
    finally:
        alice.delete(f"api_key/{key['_id']}")


def test_bogus_bearer_token_is_authentication_failed(
    girder_env: dict[str, Any], folder: dict[str, Any]
) -> None:
    storage = make_adapter(girder_env, folder["root"]).bind(
        Credential("bearer", {"token": "x" * 64})
    )
    with pytest.raises(AuthenticationFailed):
        storage.stat("")


def test_bearer_token_works(girder_env: dict[str, Any], folder: dict[str, Any]) -> None:
    token = httpx.post(
        f"{girder_env['api_url']}/api_key/token",
        data={"key": girder_env["alice"]["api_key"], "duration": "0.01"},
    ).json()["authToken"]["token"]
    storage = make_adapter(girder_env, folder["root"]).bind(Credential("bearer", {"token": token}))
    write(storage, "via-token", b"hello")
    assert read(storage, "via-token") == b"hello"


def test_missing_credential_and_wrong_kind(
    girder_env: dict[str, Any], folder: dict[str, Any]
) -> None:
    adapter = make_adapter(girder_env, folder["root"])
    with pytest.raises(AuthenticationFailed, match="no credential"):
        adapter.bind(None)
    with pytest.raises(AuthenticationFailed):
        adapter.bind(Credential("user_password", {"user": "a", "password": "b"}))
    service = make_adapter(girder_env, folder["root"], api_key=girder_env["alice"]["api_key"])
    assert service.bind(None).stat("").is_dir


def test_girder_down_is_backend_unavailable(girder_env: dict[str, Any]) -> None:
    adapter = create(
        {"api_url": "http://127.0.0.1:9/api/v1", "root": "/collection/x", "retries": 0}
    )
    with pytest.raises(BackendUnavailable):
        adapter.check()
    storage = adapter.bind(alice_cred(girder_env))
    with pytest.raises(BackendUnavailable):
        storage.stat("")
    with pytest.raises(BackendUnavailable):
        storage.open_write("f")
    make_adapter(girder_env, "/collection/fedgate-tests").check()  # the real one is up


def test_user_root_and_collection_root(girder_env: dict[str, Any]) -> None:
    storage = make_adapter(girder_env, f"/user/{girder_env['alice']['login']}").bind(
        alice_cred(girder_env)
    )
    assert {"Private", "Public"} <= {e.name for e in storage.list("")}
    with pytest.raises(PermissionDenied):
        storage.open_write("not-in-a-folder")


# --- names, md5 cache, multi-file items, presign ------------------------------------


def test_name_with_slash_created_in_girder(
    gstorage: GirderStorage, folder: dict[str, Any], admin: girder_client.GirderClient
) -> None:
    data = b"slashed content"
    item = admin.createItem(folder["_id"], "a/b\\c.txt")
    admin.post("file", parameters={"parentType": "item", "parentId": item["_id"], "name": "x",
                                   "size": len(data)}, data=data)  # fmt: skip
    sub = admin.createFolder(folder["_id"], "dir/with/slashes")
    admin.post("file", parameters={"parentType": "folder", "parentId": sub["_id"], "name": "in",
                                   "size": 2}, data=b"in")  # fmt: skip
    shown = {e.name: e for e in gstorage.list("")}
    assert set(shown) == {"a\u2215b\u29f5c.txt", "dir\u2215with\u2215slashes"}
    assert read(gstorage, "a\u2215b\u29f5c.txt") == data
    assert gstorage.stat("a\u2215b\u29f5c.txt").size == len(data)
    assert read(gstorage, "dir\u2215with\u2215slashes/in") == b"in"
    assert resolve_vip_reference(gstorage, f"vip-girder:{item['_id']}") == "a\u2215b\u29f5c.txt"


def test_md5_cache_used_then_invalidated(gstorage: GirderStorage) -> None:
    write(gstorage, "m", b"first version")
    assert gstorage.checksum("m") == hashlib.md5(b"first version").hexdigest()
    node = gstorage.resolve("m")
    cached = node.doc["meta"]["fedgateMd5"]
    assert cached["md5"] == hashlib.md5(b"first version").hexdigest()
    # Plant a marker digest under the same key: the second call must return it, unread.
    gstorage.session.request(
        "PUT", f"item/{node.id}/metadata", json={"fedgateMd5": {**cached, "md5": "f" * 32}}
    )
    assert gstorage.checksum("m") == "f" * 32
    write(gstorage, "m", b"second version")  # same size, new contents: the cache is stale
    assert gstorage.checksum("m") == hashlib.md5(b"second version").hexdigest()


def test_multi_file_item_is_a_read_only_directory(
    gstorage: GirderStorage, folder: dict[str, Any], admin: girder_client.GirderClient
) -> None:
    item = admin.createItem(folder["_id"], "bundle")
    for name in ("one", "two"):
        admin.post("file", parameters={"parentType": "item", "parentId": item["_id"], "name": name,
                                       "size": 3}, data=name[:3].encode())  # fmt: skip
    admin.createItem(folder["_id"], "hollow")
    assert gstorage.stat("bundle").is_dir and gstorage.stat("hollow").is_dir
    assert {e.name for e in gstorage.list("bundle")} == {"one", "two"}
    assert list(gstorage.list("hollow")) == []
    assert read(gstorage, "bundle/two") == b"two"
    with pytest.raises(IsADirectory):
        read(gstorage, "bundle")
    with pytest.raises(PermissionDenied):
        gstorage.open_write("bundle/three")
    gstorage.delete("bundle/one")  # one file left: the item is a file now
    assert not gstorage.stat("bundle").is_dir
    assert read(gstorage, "bundle") == b"two"


def test_presign_downloads_with_plain_httpx(gstorage: GirderStorage) -> None:
    write(gstorage, "p.bin", b"presigned bytes")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    d = gstorage.presign("p.bin", "GET", expires)
    assert d.kind == "url" and d.expires_at <= expires and "token" not in d.value
    got = httpx.get(d.value, headers=d.headers)
    assert got.status_code == 200 and got.content == b"presigned bytes"
    assert httpx.get(d.value).status_code in (401, 403)  # the header is what grants access
    # The delegated token is a fresh one that dies by expires_at.
    current = httpx.get(f"{gstorage.session.api_url}/token/current", headers=d.headers).json()
    assert dt.datetime.fromisoformat(current["expires"]) <= expires
    assert current["_id"] != gstorage.session.auth.token(gstorage.session)


def test_vip_uri(gstorage: GirderStorage) -> None:
    write(gstorage, "in put.nii", b"nifti")
    uri = vip_uri(gstorage, "in put.nii", dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    assert uri.startswith("girder:/in%20put.nii?apiurl=http://127.0.0.1:8080/api/v1&fileId=")
    file_id = uri.split("fileId=")[1].split("&")[0]
    token = uri.split("token=")[1]
    got = httpx.get(
        f"{gstorage.session.api_url}/file/{file_id}/download", headers={"Girder-Token": token}
    )
    assert got.content == b"nifti"
    assert resolve_vip_reference(gstorage, uri) == "in put.nii"
    with pytest.raises(NotFound):
        resolve_vip_reference(gstorage, "vip:" + "0" * 24)


def test_delegated_tokens_read_and_nothing_more(
    girder_env: dict[str, Any], gstorage: GirderStorage, admin: girder_client.GirderClient
) -> None:
    """A delegated token comes from a read-only API key made for it; deleting the
    delegation deletes both, and the session's own token is never handed out."""
    write(gstorage, "r.bin", b"read me")
    api = girder_env["api_url"]
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    d = gstorage.presign("r.bin", "GET", expires)
    own = gstorage.session.auth.token(gstorage.session)
    assert d.headers["Girder-Token"] != own and d.revoke_ref
    current = httpx.get(f"{api}/token/current", headers=d.headers).json()
    assert current["scope"] == ["core.data.read"]
    keys = {
        k["_id"]: k for k in admin.get("api_key", parameters={"userId": girder_env["alice"]["id"]})
    }
    assert keys[d.revoke_ref]["scope"] == ["core.data.read"]
    assert float(keys[d.revoke_ref]["tokenDuration"]) <= 10 / (24 * 60)
    folder_id = gstorage.resolve("").id
    made = httpx.post(
        f"{api}/folder", params={"parentId": folder_id, "name": "x"}, headers=d.headers
    )
    assert made.status_code == 401
    gstorage.revoke_delegation(d)
    assert httpx.get(f"{api}/token/current", headers=d.headers).json() is None
    keys = admin.get("api_key", parameters={"userId": girder_env["alice"]["id"]})
    assert d.revoke_ref not in {k["_id"] for k in keys}
    with pytest.raises(NotFound):
        gstorage.revoke_delegation(d)


def test_no_delegated_token_unless_enabled_nor_from_the_service_key(
    girder_env: dict[str, Any], folder: dict[str, Any]
) -> None:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    off = make_adapter(girder_env, folder["root"])
    svc = make_adapter(
        girder_env, folder["root"], native_tokens=True, api_key=girder_env["admin"]["api_key"]
    )
    try:
        storage = off.bind(alice_cred(girder_env))
        assert not storage.capabilities.native_delegation
        assert storage.capabilities.presign_needs_headers
        assert not storage.capabilities.delegation_path_bound
        write(storage, "f", b"f")
        service = svc.bind(None)
        for s in (storage, service):
            with pytest.raises(NotSupported):
                s.presign("f", "GET", expires)
            with pytest.raises(NotSupported):
                vip_uri(s, "f", expires)  # type: ignore[arg-type]
    finally:
        off.close()
        svc.close()


def partial_uploads(admin: girder_client.GirderClient, folder_id: str) -> list[Any]:
    return [u for u in admin.get("system/uploads") if u.get("parentId") == folder_id]


def test_streamed_upload_is_invisible_and_aborted_server_side(
    gstorage: GirderStorage, folder: dict[str, Any], admin: girder_client.GirderClient
) -> None:
    big = 12 * 1024 * 1024
    w = gstorage.open_write("big", size_hint=big)
    w.write(b"x" * (6 * 1024 * 1024))  # one 5 MiB chunk has reached Girder
    assert len(partial_uploads(admin, folder["_id"])) == 1
    assert list(gstorage.list("")) == []
    w.abort()
    assert partial_uploads(admin, folder["_id"]) == []
    with pytest.raises(NotFound):
        gstorage.stat("big")


def test_a_read_after_a_stat_reuses_its_resolution_but_never_stale_bytes(
    girder_env: dict[str, Any], folder: dict[str, Any], gstorage: GirderStorage
) -> None:
    write(gstorage, "r.bin", b"first")
    calls: list[str] = []
    request = gstorage.session.request

    def counted(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(f"{method} {path.split('/')[0]}")
        return request(method, path, *args, **kwargs)

    gstorage.session.request = counted  # type: ignore[method-assign]
    try:
        assert gstorage.stat("r.bin").size == 5
        calls.clear()
        assert read(gstorage, "r.bin") == b"first"
        assert calls == ["GET file"]  # the download only: the stat's resolution was reused
        # Replaced (same file id, new size) or deleted by someone else after the stat:
        # the read notices and resolves afresh.
        other = make_adapter(girder_env, folder["root"]).bind(alice_cred(girder_env))
        gstorage.stat("r.bin")
        write(other, "r.bin", b"second, longer")
        assert read(gstorage, "r.bin") == b"second, longer"
        gstorage.stat("r.bin")
        other.delete("r.bin")
        with pytest.raises(NotFound):
            read(gstorage, "r.bin")
    finally:
        del gstorage.session.request


def test_streamed_overwrite_keeps_old_bytes_until_commit(
    gstorage: GirderStorage, admin: girder_client.GirderClient
) -> None:
    write(gstorage, "o", b"old")
    data = bytes(range(256)) * (40 * 1024 + 3)  # > 10 MiB: two chunks before commit
    w = gstorage.open_write("o", size_hint=len(data))
    for i in range(0, len(data), 1 << 20):
        w.write(data[i : i + (1 << 20)])
        assert read(gstorage, "o") == b"old"
    entry = w.commit()
    assert entry.size == len(data) and gstorage.stat("o").size == len(data)
    assert hashlib.md5(read(gstorage, "o")).hexdigest() == hashlib.md5(data).hexdigest()
    assert [e.name for e in gstorage.list("")] == ["o"]


def test_streamed_upload_splits_blocks_at_chunk_boundaries(gstorage: GirderStorage) -> None:
    # Blocks that straddle the 5 MiB chunk boundaries, written from one reused buffer:
    # the writer keeps blocks until they are sent, so it must not keep the caller's buffer.
    data = os.urandom(11 * 1024 * 1024 + 12345)
    w = gstorage.open_write("odd", size_hint=len(data))
    buf = bytearray(777_777)
    for i in range(0, len(data), len(buf)):
        n = len(data[i : i + len(buf)])
        buf[:n] = data[i : i + n]
        w.write(buf[:n] if n < len(buf) else buf)
    assert w.commit().size == len(data)
    assert hashlib.md5(read(gstorage, "odd")).hexdigest() == hashlib.md5(data).hexdigest()


def test_upload_cancelled_in_girder_fails_the_writer(
    gstorage: GirderStorage, folder: dict[str, Any], admin: girder_client.GirderClient
) -> None:
    # The sender thread's error (Girder forgot the upload) reaches the writer's caller
    # instead of leaving it waiting for a sender that stopped.
    w = gstorage.open_write("gone", size_hint=40 * 1024 * 1024)
    w.write(b"g" * (6 * 1024 * 1024))
    for upload in partial_uploads(admin, folder["_id"]):
        admin.delete(f"file/upload/{upload['_id']}")
    with pytest.raises(StorageError):
        for _ in range(34):
            w.write(b"g" * (1024 * 1024))
        w.commit()
    assert partial_uploads(admin, folder["_id"]) == []
    with pytest.raises(NotFound):
        gstorage.stat("gone")


def test_size_hint_mismatch_fails_cleanly(gstorage: GirderStorage) -> None:
    w = gstorage.open_write("short", size_hint=11 * 1024 * 1024)
    w.write(b"y" * (6 * 1024 * 1024))
    with pytest.raises(StorageError, match="fewer bytes"):
        w.commit()
    with pytest.raises(NotFound):
        gstorage.stat("short")
    # A wrong hint is harmless while nothing was sent yet.
    w = gstorage.open_write("lenient", size_hint=3)
    w.write(b"12345")
    assert w.commit().size == 5 and read(gstorage, "lenient") == b"12345"


def test_a_girder_view_revokes_and_names_vip_uris_and_reads_no_chunk_ahead() -> None:
    adapter = create(
        {"api_url": "http://127.0.0.1:9/api/v1", "root": "/collection/x", "api_key": "k"}
    )
    storage = adapter.bind(None)  # no request is sent before a call needs one
    assert features(storage) == Features(revocable=True, vip_uris=True)
    assert storage.capabilities.read_ahead == 0
    # Without a credential at all, a delegated token deletes itself.
    assert features(adapter) == Features(revocable=True)
    adapter.close()


def test_settings_are_checked_and_never_show_the_service_key() -> None:
    options = {"api_url": "https://g/api/v1", "root": "/user/alice", "api_key": "s3cr3t-key"}
    settings = GirderSettings.from_options({**options, "upload_chunk_mib": 1})
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings)
    assert settings.chunk_size == 5 * 1024 * 1024  # Girder's minimum, whatever is asked
    for bad in ({"root": "/elsewhere"}, {"native_tokens": "yes"}, {"api_kye": "k"}):
        with pytest.raises(ValueError):
            GirderSettings.from_options({**options, **bad})
    with pytest.raises(ValueError):
        GirderSettings.from_options({"root": "/user/alice"})
