"""The gateway over HTTP on Girder mounts, against a real Girder 5 (scripts/testbeds/girder.sh):
CARMIN actions with each user's Girder API key stored the way VIP stores it, the failures
a job must see clearly, a folder longer than one Girder page, and Girder-token delegation
through ``/token/native`` (download URL + ``Girder-Token`` header, and VIP/GASW
``girder:/…?apiurl=…&fileId=…&token=…`` input URIs)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import girder_client
import httpx
import pytest
from click.testing import CliRunner
from girder_client import cli as girder_cli

from gateway.config import MountConfig
from tests.gateway.carmin_flow import check_carmin_actions, name_of
from tests.gateway.test_data_api import is_error
from tests.gateway.test_delegation import bearer, token
from tests.server import Running, local_settings, running
from tests.testbeds import REPO, running_testbed

ENV = REPO / ".testbeds" / "girder" / "env.json"
OCTET = {"Content-Type": "application/octet-stream"}
PAGE = 50


@pytest.fixture(scope="module")
def girder_env() -> Iterator[dict[str, Any]]:
    with running_testbed("girder"):
        yield json.loads(ENV.read_text())


@pytest.fixture(scope="module")
def admin(girder_env: dict[str, Any]) -> girder_client.GirderClient:
    gc = girder_client.GirderClient(apiUrl=girder_env["api_url"])
    gc.authenticate(apiKey=girder_env["admin"]["api_key"])
    return gc


@pytest.fixture(scope="module")
def root(girder_env: dict[str, Any], admin: girder_client.GirderClient) -> Iterator[str]:
    name = f"gw-{uuid.uuid4().hex[:10]}"
    doc = admin.createFolder(girder_env["collection_id"], name, parentType="collection")
    yield f"/collection/{girder_env['collection']}/{name}"
    admin.delete(f"folder/{doc['_id']}")


@pytest.fixture(scope="module")
def gw(
    girder_env: dict[str, Any], root: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    api = girder_env["api_url"]
    mounts = (
        MountConfig("girder", "girder", {"api_url": api, "root": root, "page_size": PAGE},
                    credential_source="user"),
        MountConfig("down", "girder", {"api_url": "http://127.0.0.1:9/api/v1",
                                       "root": "/collection/x", "retries": 0},
                    credential_source="user"),
    )  # fmt: skip
    with running(local_settings(tmp_path_factory.mktemp("girder-gw"), mounts=mounts)) as r:
        for mount in ("girder", "down"):
            _store_key(r, r.key, mount, girder_env["alice"]["api_key"])
        yield r


def _store_key(gw: Running, key: str, mount: str, girder_key: str) -> None:
    """Exactly what VIP sends to store a user's key for an external platform."""
    put = httpx.put(
        gw.api + "/user/externalKeys",
        json={"storageIdentifier": mount, "apiKey": girder_key},
        headers={"apikey": key},
    )
    assert put.status_code == 200, put.text


@pytest.fixture
def folder(client: httpx.Client) -> str:
    name = f"f-{uuid.uuid4().hex[:8]}"
    assert client.put(f"/path/girder/{name}").status_code == 201
    return name


def _exp(tok: str) -> int:
    payload = tok.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


def _girder_expiry(api: str, girder_token: str) -> dt.datetime | None:
    current = httpx.get(f"{api}/token/current", headers={"Girder-Token": girder_token}).json()
    return dt.datetime.fromisoformat(current["expires"]) if current else None


# --- CARMIN actions -----------------------------------------------------------------------


def test_carmin_actions(client: httpx.Client, folder: str) -> None:
    check_carmin_actions(client, "girder", folder, size=2_304_000)


def test_listing_longer_than_one_girder_page(
    client: httpx.Client, admin: girder_client.GirderClient, girder_env: dict[str, Any], root: str
) -> None:
    name = f"many-{uuid.uuid4().hex[:6]}"
    assert client.put(f"/path/girder/{name}").status_code == 201
    parent = admin.resourceLookup(f"{root}/{name}")["_id"]
    count = 2 * PAGE + 7
    with admin.session():
        for i in range(count):  # size 0: Girder creates item and file in one call
            admin.post(
                "file",
                parameters={"parentType": "folder", "parentId": parent,
                            "name": f"e{i:04d}", "size": 0},
            )  # fmt: skip
        for i in range(3):
            admin.createFolder(parent, f"d{i}")
    listing = client.get(f"/path/girder/{name}?action=list").json()
    names = [name_of(e) for e in listing]
    assert len(names) == count + 3 == len(set(names))
    assert set(names) == {f"e{i:04d}" for i in range(count)} | {"d0", "d1", "d2"}
    assert sum(e["isDirectory"] for e in listing) == 3


# --- failures -----------------------------------------------------------------------------


def test_deleted_girder_key_is_401(gw: Running, girder_env: dict[str, Any], folder: str) -> None:
    alice = girder_client.GirderClient(apiUrl=girder_env["api_url"])
    alice.authenticate(girder_env["alice"]["login"], girder_env["alice"]["password"])
    doomed = alice.post("api_key", parameters={"name": f"doomed-{uuid.uuid4().hex[:6]}"})
    _, key = gw.gateway.users.add_user(f"u{uuid.uuid4().hex[:6]}")
    _store_key(gw, key, "girder", doomed["key"])
    with gw.client(key) as c:
        assert c.get(f"/path/girder/{folder}?action=list").status_code == 200
        alice.delete(f"api_key/{doomed['_id']}")  # Girder also kills the key's tokens
        r = c.get(f"/path/girder/{folder}?action=list")
        is_error(r, 401, 40103)
        assert doomed["key"] not in r.text
        is_error(c.put(f"/path/girder/{folder}/x", content=b"x", headers=OCTET), 401, 40103)


def test_deactivated_girder_key_is_401(
    gw: Running, girder_env: dict[str, Any], folder: str
) -> None:
    alice = girder_client.GirderClient(apiUrl=girder_env["api_url"])
    alice.authenticate(girder_env["alice"]["login"], girder_env["alice"]["password"])
    off = alice.post("api_key", parameters={"name": f"off-{uuid.uuid4().hex[:6]}"})
    try:
        alice.put(f"api_key/{off['_id']}", parameters={"active": "false"})
        _, key = gw.gateway.users.add_user(f"u{uuid.uuid4().hex[:6]}")
        _store_key(gw, key, "girder", off["key"])
        with gw.client(key) as c:
            is_error(c.get(f"/path/girder/{folder}?action=properties"), 401, 40103)
    finally:
        alice.delete(f"api_key/{off['_id']}")


def test_girder_down_is_503(client: httpx.Client) -> None:
    is_error(client.get("/path/down?action=list"), 503, 50301)
    is_error(client.get("/path/down/f?action=content"), 503, 50301)
    is_error(client.put("/path/down/f", content=b"x", headers=OCTET), 503, 50301)


# --- delegation ---------------------------------------------------------------------------


def test_native_download_url_with_girder_token_header(
    gw: Running, girder_env: dict[str, Any], client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/girder/{folder}/in.nii", content=b"delegated bytes", headers=OCTET)
    tok = token(gw, f"storage.read:/girder/{folder}", lifetime=900)
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/girder/{folder}/in.nii"}, headers=bearer(tok)
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["kind"] == "url" and body["method"] == "GET"
    assert body["value"].startswith(girder_env["api_url"] + "/file/")
    assert "token" not in body["value"]  # header-based: the secret is not in the URL
    girder_token = body["headers"]["Girder-Token"]
    got = httpx.get(body["value"], headers=body["headers"])  # plain httpx, no fedgate
    assert got.status_code == 200 and got.content == b"delegated bytes"
    assert httpx.get(body["value"]).status_code in (401, 403)
    expires = _girder_expiry(girder_env["api_url"], girder_token)
    assert expires is not None and expires.timestamp() <= _exp(tok)
    assert body["expiresAt"] <= _exp(tok)
    # A Bearer GET on a Girder file is not redirected: the URL needs its header.
    streamed = httpx.get(
        gw.api + f"/path/girder/{folder}/in.nii?action=content", headers=bearer(tok)
    )
    assert streamed.status_code == 200 and streamed.content == b"delegated bytes"
    # Revoking the fedgate token kills the Girder token it was given.
    jti = gw.gateway.tokens.decode(tok).jti
    revoked = httpx.post(gw.api + "/token/revoke", data={"jti": jti}, headers={"apikey": gw.key})
    assert revoked.json() == {"revoked": 1}
    assert _girder_expiry(girder_env["api_url"], girder_token) is None
    assert httpx.get(body["value"], headers=body["headers"]).status_code in (401, 403)
    assert gw.gateway.grants.count(jti) == 0


def test_vip_input_uri_works_with_girder_client(
    gw: Running, girder_env: dict[str, Any], client: httpx.Client, folder: str, tmp_path: Path
) -> None:
    client.put(f"/path/girder/{folder}/in put.nii", content=b"for the job", headers=OCTET)
    tok = token(gw, f"storage.read:/girder/{folder}", lifetime=600)
    r = httpx.post(
        gw.api + "/token/native",
        json={"path": f"/girder/{folder}/in put.nii", "format": "vip"},
        headers=bearer(tok),
    )
    assert r.status_code == 200, r.text
    uri = r.json()["uri"]
    assert uri.startswith("girder:/in%20put.nii?") and r.json()["expiresAt"] <= _exp(tok)
    parts = urlsplit(uri)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["apiurl"] == girder_env["api_url"]
    # What GASW runs: girder-client --api-url $apiurl --token $token download
    #                 --parent-type auto $fileId <the URI's name>
    target = tmp_path / unquote(parts.path.lstrip("/"))
    args = ["--api-url", query["apiurl"], "--token", query["token"], "download",
            "--parent-type", "auto", query["fileId"], str(target)]  # fmt: skip
    result = CliRunner().invoke(girder_cli.main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == b"for the job"
    gc = girder_client.GirderClient(apiUrl=query["apiurl"])
    gc.setToken(query["token"])
    assert b"".join(gc.downloadFileAsIterator(query["fileId"])) == b"for the job"
    expires = _girder_expiry(girder_env["api_url"], query["token"])
    assert expires is not None and expires.timestamp() <= _exp(tok)
    # The VIP URI's token dies with the fedgate token too.
    httpx.post(gw.api + "/token/revoke", data={"token": tok})
    assert _girder_expiry(girder_env["api_url"], query["token"]) is None


def test_native_refusals(gw: Running, client: httpx.Client, folder: str) -> None:
    client.put(f"/path/girder/{folder}/a.txt", content=b"a", headers=OCTET)
    tok = token(gw, f"storage.read:/girder/{folder}/a.txt storage.create:/girder/{folder}/new")
    native = gw.api + "/token/native"
    is_error(httpx.post(native, json={"path": f"/girder/{folder}/b"}, headers=bearer(tok)), 403)
    is_error(  # Girder has no presigned upload
        httpx.post(
            native, json={"path": f"/girder/{folder}/new/f", "method": "PUT"}, headers=bearer(tok)
        ),
        501,
        50101,
    )
    is_error(
        httpx.post(
            native,
            json={"path": f"/girder/{folder}/a.txt", "format": "vip", "method": "PUT"},
            headers=bearer(tok),
        ),
        400,
        40004,
    )
    is_error(  # a directory has no download URL
        httpx.post(
            native,
            json={"path": f"/girder/{folder}", "format": "vip"},
            headers=bearer(token(gw, f"storage.read:/girder/{folder}")),
        ),
        409,
        40903,
    )


def test_bearer_token_reaches_a_name_with_a_space(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/girder/{folder}/a b.txt", content=b"spaced", headers=OCTET)
    tok = token(gw, f"storage.read:/girder/{folder}")
    got = httpx.get(gw.api + f"/path/girder/{folder}/a b.txt?action=content", headers=bearer(tok))
    assert got.content == b"spaced"
