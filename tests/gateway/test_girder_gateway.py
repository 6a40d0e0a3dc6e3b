"""The gateway over HTTP on Girder mounts, against a real Girder 5 (scripts/testbeds/girder.sh):
each user's Girder API key stored the way VIP stores it, the failures a job must see
clearly, a folder longer than one Girder page, and Girder-token delegation
through ``/token/native`` (download URL + ``Girder-Token`` header, and VIP/GASW
``girder:/…?apiurl=…&fileId=…&token=…`` input URIs). The walk through every CARMIN
action, on every backend, is test_carmin_backends.py."""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
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
from tests.gateway.carmin_flow import name_of
from tests.gateway.helpers import bearer, is_error, token
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
        MountConfig("girder", "girder",
                    {"api_url": api, "root": root, "page_size": PAGE, "native_tokens": True},
                    credential_source="user"),
        # Girder tokens are not handed out unless the mount says so.
        MountConfig("gplain", "girder", {"api_url": api, "root": root},
                    credential_source="user"),
        # The service account's tokens are never handed out, enabled or not.
        MountConfig("gsvc", "girder", {"api_url": api, "root": root, "native_tokens": True,
                                       "api_key": girder_env["admin"]["api_key"]},
                    credential_source="service"),
        MountConfig("gbearer", "girder", {"api_url": api, "root": root, "native_tokens": True},
                    credential_source="user"),
        MountConfig("down", "girder", {"api_url": "http://127.0.0.1:9/api/v1",
                                       "root": "/collection/x", "retries": 0},
                    credential_source="user"),
    )  # fmt: skip
    with running(local_settings(tmp_path_factory.mktemp("girder-gw"), mounts=mounts)) as r:
        for mount in ("girder", "gplain", "down"):
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


# --- listings ----------------------------------------------------------------------------


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


def _alice_keys(admin: girder_client.GirderClient, env: dict[str, Any]) -> dict[str, Any]:
    keys = admin.get("api_key", parameters={"userId": env["alice"]["id"], "limit": 0})
    return {str(k["_id"]): k for k in keys}


def _girder_refuses_writes(api: str, girder_token: str, folder_id: str, item_id: str) -> None:
    """Everything a read-only Girder token must not do, tried with plain HTTP as the job
    could: create a folder, upload, change or delete the item, mint itself a wider key."""
    hdr = {"Girder-Token": girder_token}
    tries = [
        httpx.post(f"{api}/folder", params={"parentId": folder_id, "name": "evil"}, headers=hdr),
        httpx.post(f"{api}/item", params={"folderId": folder_id, "name": "evil"}, headers=hdr),
        httpx.post(
            f"{api}/file",
            params={"parentType": "folder", "parentId": folder_id, "name": "evil", "size": 0},
            headers=hdr,
        ),
        httpx.put(f"{api}/item/{item_id}", params={"name": "renamed"}, headers=hdr),
        httpx.delete(f"{api}/item/{item_id}", headers=hdr),
        httpx.delete(f"{api}/folder/{folder_id}", headers=hdr),
        httpx.post(f"{api}/api_key", data={"name": "wider"}, headers=hdr),
    ]
    assert [t.status_code for t in tries] == [401] * len(tries), [t.text for t in tries]


def test_native_girder_token_reads_and_nothing_more(
    gw: Running,
    girder_env: dict[str, Any],
    admin: girder_client.GirderClient,
    root: str,
    client: httpx.Client,
    folder: str,
) -> None:
    api = girder_env["api_url"]
    client.put(f"/path/girder/{folder}/in.nii", content=b"input", headers=OCTET)
    folder_id = admin.resourceLookup(f"{root}/{folder}")["_id"]
    item_id = admin.resourceLookup(f"{root}/{folder}/in.nii")["_id"]
    keys_before = _alice_keys(admin, girder_env)
    tok = token(gw, f"storage.read:/girder/{folder}/in.nii", lifetime=600)
    for fmt in ("native", "vip"):
        r = httpx.post(
            gw.api + "/token/native",
            json={"path": f"/girder/{folder}/in.nii", "format": fmt},
            headers=bearer(tok),
        )
        assert r.status_code == 200, r.text
        if fmt == "native":
            girder_token = r.json()["headers"]["Girder-Token"]
        else:
            girder_token = parse_qs(urlsplit(r.json()["uri"]).query)["token"][0]
        current = httpx.get(f"{api}/token/current", headers={"Girder-Token": girder_token})
        assert current.json()["scope"] == ["core.data.read"]
        assert dt.datetime.fromisoformat(current.json()["expires"]).timestamp() <= _exp(tok)
        got = httpx.get(f"{api}/item/{item_id}/download", headers={"Girder-Token": girder_token})
        assert got.content == b"input"
        _girder_refuses_writes(api, girder_token, folder_id, item_id)
    assert admin.get(f"item/{item_id}")["name"] == "in.nii"  # nothing changed
    assert admin.get("folder", parameters={"parentId": folder_id, "parentType": "folder",
                                           "name": "evil"}) == []  # fmt: skip
    # One read-only key per grant, both recorded; revoking the token deletes them in
    # Girder, and their tokens with them.
    made = set(_alice_keys(admin, girder_env)) - set(keys_before)
    assert len(made) == 2
    assert all(_alice_keys(admin, girder_env)[k]["scope"] == ["core.data.read"] for k in made)
    jti = gw.gateway.tokens.decode(tok).jti
    assert gw.gateway.grants.count(jti) == 2
    assert httpx.post(gw.api + "/token/revoke", data={"token": tok}).status_code == 200
    assert not made & set(_alice_keys(admin, girder_env))
    assert _girder_expiry(api, girder_token) is None
    assert gw.gateway.grants.count(jti) == 0


def test_expired_grant_is_deleted_in_girder_by_the_sweep(
    gw: Running, girder_env: dict[str, Any], admin: girder_client.GirderClient,
    client: httpx.Client, folder: str,
) -> None:  # fmt: skip
    client.put(f"/path/girder/{folder}/x.nii", content=b"x", headers=OCTET)
    keys_before = _alice_keys(admin, girder_env)
    tok = token(gw, f"storage.read:/girder/{folder}", lifetime=600)
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/girder/{folder}/x.nii"}, headers=bearer(tok)
    )
    assert r.status_code == 200, r.text
    (made,) = set(_alice_keys(admin, girder_env)) - set(keys_before)
    jti = gw.gateway.tokens.decode(tok).jti
    with gw.gateway.store.transaction() as tx:
        tx.execute("UPDATE native_grants SET expires = 0 WHERE jti = ?", (jti,))
    assert gw.gateway.grants.sweep() >= 1
    assert made not in _alice_keys(admin, girder_env)
    assert _girder_expiry(girder_env["api_url"], r.json()["headers"]["Girder-Token"]) is None
    # A grant asked with the API key (no token to revoke) is recorded and swept too.
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/girder/{folder}/x.nii"}, headers=client.headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["expiresAt"] <= time.time() + gw.settings.presign_lifetime
    (made,) = set(_alice_keys(admin, girder_env)) - set(keys_before)
    with gw.gateway.store.transaction() as tx:
        tx.execute("UPDATE native_grants SET expires = 0 WHERE jti LIKE 'apikey:%'")
    assert gw.gateway.grants.sweep() >= 1
    assert set(_alice_keys(admin, girder_env)) == set(keys_before)
    assert _girder_expiry(girder_env["api_url"], r.json()["headers"]["Girder-Token"]) is None


def test_the_background_sweep_deletes_expired_grants_without_a_new_one(
    gw: Running, girder_env: dict[str, Any], admin: girder_client.GirderClient,
    client: httpx.Client, folder: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    client.put(f"/path/girder/{folder}/s.nii", content=b"s", headers=OCTET)
    keys_before = _alice_keys(admin, girder_env)
    tok = token(gw, f"storage.read:/girder/{folder}", lifetime=600)
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/girder/{folder}/s.nii"}, headers=bearer(tok)
    )
    assert r.status_code == 200, r.text
    (made,) = set(_alice_keys(admin, girder_env)) - set(keys_before)
    jti = gw.gateway.tokens.decode(tok).jti
    grants = gw.gateway.grants
    swept = threading.Event()
    sweep = grants.sweep

    def counted_sweep() -> int:
        done = sweep()
        swept.set()
        return done

    monkeypatch.setattr(grants, "sweep", counted_sweep)
    stop = threading.Event()
    sweeper = threading.Thread(target=grants.sweep_forever, args=(stop, 0.2))
    sweeper.start()
    try:
        # The grant expires only after the first sweep: a later one must delete it.
        assert swept.wait(30)
        with gw.gateway.store.transaction() as tx:
            tx.execute("UPDATE native_grants SET expires = 0 WHERE jti = ?", (jti,))
        deadline = time.monotonic() + 30
        while made in _alice_keys(admin, girder_env) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        sweeper.join()
    assert made not in _alice_keys(admin, girder_env)
    assert gw.gateway.grants.count(jti) == 0


def test_a_grant_whose_user_credential_is_gone_still_dies_on_revocation(
    gw: Running, girder_env: dict[str, Any], client: httpx.Client, folder: str
) -> None:
    """With the user's key gone from the vault and no service key on the mount, the
    delegated Girder token still deletes itself when the fedgate token is revoked."""
    client.put(f"/path/girder/{folder}/in.nii", content=b"input", headers=OCTET)
    tok = token(gw, f"storage.read:/girder/{folder}")
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/girder/{folder}/in.nii"}, headers=bearer(tok)
    )
    assert r.status_code == 200, r.text
    handed = r.json()["headers"]["Girder-Token"]
    assert gw.gateway.vault.delete("admin", "girder")
    try:
        assert httpx.post(gw.api + "/token/revoke", data={"token": tok}).status_code == 200
        assert _girder_expiry(girder_env["api_url"], handed) is None
        assert gw.gateway.grants.count(gw.gateway.tokens.decode(tok).jti) == 0
    finally:
        _store_key(gw, gw.key, "girder", girder_env["alice"]["api_key"])


def test_girder_tokens_are_opt_in_and_never_the_service_accounts(
    gw: Running, girder_env: dict[str, Any], admin: girder_client.GirderClient,
    client: httpx.Client, folder: str,
) -> None:  # fmt: skip
    client.put(f"/path/girder/{folder}/in.nii", content=b"input", headers=OCTET)

    def admin_keys() -> set[str]:
        return {str(k["_id"]) for k in admin.get("api_key", parameters={"limit": 0})}

    before = (set(_alice_keys(admin, girder_env)), admin_keys())
    for mount in ("gplain", "gsvc"):
        tok = token(gw, f"storage.read:/{mount}/{folder}")
        for fmt in ("native", "vip"):
            r = httpx.post(
                gw.api + "/token/native",
                json={"path": f"/{mount}/{folder}/in.nii", "format": fmt},
                headers=bearer(tok),
            )
            if mount == "gplain":  # not enabled on this mount
                is_error(r, 501, 50101)
                assert "native_tokens" in r.json()["errorMessage"]
            else:  # the service account's token: never
                is_error(r, 403, 40303)
                assert "service credential" in r.json()["errorMessage"]
        # The job can still read through fedgate.
        got = httpx.get(
            f"{gw.api}/path/{mount}/{folder}/in.nii?action=content", headers=bearer(tok)
        )
        assert got.content == b"input"
    assert (set(_alice_keys(admin, girder_env)), admin_keys()) == before  # nothing minted


def test_a_stored_girder_token_is_never_handed_out_as_is(
    gw: Running, girder_env: dict[str, Any], admin: girder_client.GirderClient,
    client: httpx.Client, folder: str,
) -> None:  # fmt: skip
    client.put(f"/path/girder/{folder}/in.nii", content=b"input", headers=OCTET)
    login = httpx.post(
        girder_env["api_url"] + "/api_key/token",
        data={"key": girder_env["alice"]["api_key"], "duration": "0.02"},
    ).json()["authToken"]["token"]
    put = httpx.put(
        gw.api + "/user/externalKeys",
        json={"storageIdentifier": "gbearer", "credential": {"kind": "bearer", "token": login}},
        headers={"apikey": gw.key},
    )
    assert put.status_code == 200, put.text
    tok = token(gw, f"storage.read:/gbearer/{folder}")
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/gbearer/{folder}/in.nii"}, headers=bearer(tok)
    )
    assert r.status_code == 200, r.text
    handed = r.json()["headers"]["Girder-Token"]
    assert handed != login
    current = httpx.get(
        girder_env["api_url"] + "/token/current", headers={"Girder-Token": handed}
    ).json()
    assert current["scope"] == ["core.data.read"]
    httpx.post(gw.api + "/token/revoke", data={"token": tok})
    assert _girder_expiry(girder_env["api_url"], handed) is None
    assert _girder_expiry(girder_env["api_url"], login) is not None  # the user's own lives


def test_counted_token_gets_no_girder_token(gw: Running, client: httpx.Client, folder: str) -> None:
    client.put(f"/path/girder/{folder}/in.nii", content=b"input", headers=OCTET)
    tok = token(gw, f"storage.read:/girder/{folder}", uses=3)
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/girder/{folder}/in.nii"}, headers=bearer(tok)
    )
    is_error(r, 403, 40303)
    assert "use count" in r.json()["errorMessage"]


def test_a_bearer_get_mints_nothing_in_girder(
    gw: Running, girder_env: dict[str, Any], admin: girder_client.GirderClient,
    client: httpx.Client, folder: str,
) -> None:  # fmt: skip
    """A job's GET is streamed (a Girder URL needs its token header, no redirect can carry
    it) and no Girder token or key is made for a redirect that cannot happen."""
    client.put(f"/path/girder/{folder}/in.nii", content=b"streamed", headers=OCTET)
    tok = token(gw, f"storage.read:/girder/{folder}")
    storage = gw.gateway.mounts.storage(gw.gateway.mounts.config("girder"), "admin")
    assert storage.capabilities.presign_needs_headers
    before = set(_alice_keys(admin, girder_env))
    for query in ("", "&redirect=true"):
        got = httpx.get(
            f"{gw.api}/path/girder/{folder}/in.nii?action=content{query}", headers=bearer(tok)
        )
        assert got.status_code == 200 and got.content == b"streamed"
    assert set(_alice_keys(admin, girder_env)) == before


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
