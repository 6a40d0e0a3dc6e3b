"""The web page in a real Chromium on S3 (SeaweedFS) and Girder 5 mounts: the user stores
their storage key through the page's "Storage keys" section, then browses, uploads,
downloads and deletes there, the bytes checked on the storage itself; deleting the key
in the page makes the mount refuse them again."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import girder_client
import httpx
import pytest

from adapters.base import Credential, NotFound
from adapters.s3 import create
from gateway.config import MountConfig
from tests.server import Running, local_settings, running
from tests.testbeds import REPO, running_testbed
from tests.ui.flow import check_file_flow, confirm_dialog
from tests.ui.page import UiPage

ENDPOINT = "http://127.0.0.1:8333"
BUCKET = "fedgate-tests"
S3_KEYS = {"accessKey": "testkey", "secretKey": "testsecret"}
GIRDER_ENV = REPO / ".testbeds" / "girder" / "env.json"


def add_key(ui: UiPage, mount: str, fields: dict[str, str], shot: str | None = None) -> None:
    page = ui.page
    page.get_by_role("link", name="Storage keys").click()
    page.get_by_role("heading", level=1, name="Storage keys").wait_for()
    page.get_by_label("Mount", exact=True).select_option(mount)
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Save key").click()
    page.get_by_role("button", name=f"Delete key for {mount}").wait_for()
    # The secret is never shown back.
    for value in fields.values():
        assert value not in page.content()
    if shot:
        ui.check(shot)


def delete_key(ui: UiPage, mount: str) -> None:
    page = ui.page
    page.get_by_role("link", name="Storage keys").click()
    page.get_by_role("button", name=f"Delete key for {mount}").click()
    confirm_dialog(ui, "Delete")
    page.get_by_role("button", name=f"Delete key for {mount}").wait_for(state="detached")
    page.get_by_role("status").filter(has_text=f"Key for {mount} deleted.").wait_for()


def refused_without_key(ui: UiPage, gw: Running, mount: str) -> None:
    """Without a stored key the mount answers an error the page shows in words."""
    direct = httpx.get(f"{gw.api}/path/{mount}", params={"action": "list"},
                       headers={"apikey": gw.key})  # fmt: skip
    assert direct.status_code >= 400
    ui.page.goto(f"{ui.origin}/#/files/{mount}")
    ui.page.get_by_role("alert").filter(has_text=direct.json()["errorMessage"]).wait_for()
    ui.page.get_by_text("This folder could not be listed.").wait_for()
    ui.expect_http_errors(direct.status_code)


# --- S3 ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[tuple[Any, str]]:
    with running_testbed("seaweedfs"):
        adapter = create({"endpoint_url": ENDPOINT, "bucket": BUCKET})
        storage = adapter.bind(Credential("access_secret", dict(S3_KEYS)))
        client = storage.client  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):  # already there: fine
            client.create_bucket(Bucket=BUCKET)
        prefix = f"ui-{uuid.uuid4().hex[:10]}"
        yield client, prefix
        with contextlib.suppress(NotFound):
            storage.delete(prefix)
        adapter.close()


@pytest.fixture(scope="module")
def s3_gw(s3: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    _, prefix = s3
    mount = MountConfig(
        name="s3",
        type="s3",
        options={"endpoint_url": ENDPOINT, "bucket": BUCKET, "prefix": prefix},
        credential_source="user",
    )
    with running(local_settings(tmp_path_factory.mktemp("ui-s3"), mounts=(mount,))) as r:
        yield r


def test_files_and_key_on_s3(
    s3: tuple[Any, str], s3_gw: Running, make_page: Any, tmp_path: Path
) -> None:
    client, prefix = s3

    def read(inner: str) -> bytes | None:
        try:
            body: bytes = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{inner}")["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return body

    def exists(inner: str) -> bool:
        found = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/{inner}/", MaxKeys=1)
        return bool(found.get("KeyCount"))

    ui: UiPage = make_page(s3_gw)
    ui.sign_in(s3_gw.key)
    refused_without_key(ui, s3_gw, "s3")
    add_key(ui, "s3", {"Access key": S3_KEYS["accessKey"], "Secret key": S3_KEYS["secretKey"]},
            shot="storage-keys")  # fmt: skip
    ui.page.get_by_role("link", name="Files").click()
    check_file_flow(ui, "s3", tmp_path, read, exists)
    delete_key(ui, "s3")
    refused_without_key(ui, s3_gw, "s3")
    ui.assert_clean(secrets=(s3_gw.key, S3_KEYS["secretKey"]))


# --- Girder -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def girder() -> Iterator[tuple[dict[str, Any], Any, str]]:
    with running_testbed("girder"):
        env = json.loads(GIRDER_ENV.read_text())
        admin = girder_client.GirderClient(apiUrl=env["api_url"])
        admin.authenticate(apiKey=env["admin"]["api_key"])
        name = f"ui-{uuid.uuid4().hex[:10]}"
        doc = admin.createFolder(env["collection_id"], name, parentType="collection")
        yield env, admin, f"/collection/{env['collection']}/{name}"
        admin.delete(f"folder/{doc['_id']}")


@pytest.fixture(scope="module")
def girder_gw(
    girder: tuple[dict[str, Any], Any, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    env, _, root = girder
    mount = MountConfig(
        "girder", "girder", {"api_url": env["api_url"], "root": root}, credential_source="user"
    )
    with running(local_settings(tmp_path_factory.mktemp("ui-girder"), mounts=(mount,))) as r:
        yield r


def test_files_and_key_on_girder(
    girder: tuple[dict[str, Any], Any, str], girder_gw: Running, make_page: Any, tmp_path: Path
) -> None:
    env, admin, root = girder

    def lookup(inner: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = admin.resourceLookup(f"{root}/{inner}")
        except girder_client.HttpError:
            return None
        return found

    def read(inner: str) -> bytes | None:
        item = lookup(inner)
        if item is None:
            return None
        files = list(admin.listFile(item["_id"]))
        assert len(files) == 1
        chunks = admin.downloadFileAsIterator(files[0]["_id"])
        return b"".join(chunks)

    def exists(inner: str) -> bool:
        found = lookup(inner)
        return found is not None and found["_modelType"] == "folder"

    ui: UiPage = make_page(girder_gw)
    ui.sign_in(girder_gw.key)
    refused_without_key(ui, girder_gw, "girder")
    ui.page.get_by_role("link", name="Storage keys").click()
    ui.page.get_by_label("Mount", exact=True).select_option("girder")
    # The kind follows the mount's type: a Girder API key.
    assert ui.page.get_by_label("Kind").input_value() == "apikey"
    add_key(ui, "girder", {"Storage API key": env["alice"]["api_key"]})
    ui.page.get_by_role("link", name="Files").click()
    check_file_flow(ui, "girder", tmp_path, read, exists)
    delete_key(ui, "girder")
    refused_without_key(ui, girder_gw, "girder")
    ui.assert_clean(secrets=(girder_gw.key, env["alice"]["api_key"]))
