"""The gateway over HTTP on iRODS mounts, against the iRODS *protocol test server*
(tests/irods_server — not a real iRODS): a per-user ``user_password`` credential, the
failures a job must see clearly, and iRODS-ticket delegation through
``/token/native`` (tickets expire with the token, carry its use count, and are deleted
when the token is revoked — by id, by execution id, or by deleting the storage key). The
walk through every CARMIN action, on every backend, is test_carmin_backends.py."""

from __future__ import annotations

import base64
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from irods.exception import (
    CAT_NO_ACCESS_PERMISSION,
    CAT_TICKET_INVALID,
    CAT_TICKET_USES_EXCEEDED,
)
from irods.session import iRODSSession

from gateway.config import MountConfig
from tests.gateway.helpers import bearer, exchange, is_error, scrape, token, value
from tests.irods_server import IrodsTestServer
from tests.server import Running, local_settings, running

OCTET = {"Content-Type": "application/octet-stream"}


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def irods() -> Iterator[IrodsTestServer]:
    with IrodsTestServer() as srv:
        yield srv


def _new_coll(srv: IrodsTestServer, user: str) -> str:
    path = f"{srv.home(user)}/gw-{uuid.uuid4().hex[:10]}"
    with srv.catalog.lock:
        srv.catalog._new_coll(path, user)
    return path


@pytest.fixture(scope="module")
def gw(irods: IrodsTestServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    base = {"host": irods.host, "port": irods.port, "zone": irods.zone, "timeout": 10}
    shared = _new_coll(irods, "bob")
    bob = iRODSSession(
        host=irods.host, port=irods.port, zone=irods.zone, user="bob",
        password=irods.users["bob"],
    )  # fmt: skip
    try:
        for name in ("readable.txt", "private.txt"):
            with bob.data_objects.open(f"{shared}/{name}", "w") as f:
                f.write(b"bob's " + name.encode())
    finally:
        bob.cleanup()
    irods.catalog.grant(shared, "alice", "read")
    irods.catalog.grant(f"{shared}/readable.txt", "alice", "read")
    mounts = (
        MountConfig("irods", "irods", {**base, "root": _new_coll(irods, "alice")},
                    credential_source="user"),
        MountConfig("shared", "irods", {**base, "root": shared}, credential_source="user"),
        MountConfig("gone", "irods", {**base, "port": _dead_port(), "root": "/tempZone/home"},
                    credential_source="user"),
    )  # fmt: skip
    tmp = tmp_path_factory.mktemp("irods-gw")
    with running(local_settings(tmp, mounts=mounts)) as r:
        alice = {"kind": "user_password", "user": "alice", "password": irods.users["alice"]}
        for mount in ("irods", "shared", "gone"):
            put = httpx.put(
                r.api + "/user/externalKeys",
                json={"storageIdentifier": mount, "credential": alice},
                headers={"apikey": r.key},
            )
            assert put.status_code == 200, put.text
        yield r


@pytest.fixture
def folder(client: httpx.Client) -> str:
    name = f"f-{uuid.uuid4().hex[:8]}"
    assert client.put(f"/path/irods/{name}").status_code == 201
    return name


# --- failures -----------------------------------------------------------------------------


def test_wrong_password_is_401(gw: Running, irods: IrodsTestServer) -> None:
    _, key = gw.gateway.users.add_user(f"u{uuid.uuid4().hex[:6]}")
    wrong = {"kind": "user_password", "user": "alice", "password": "not-the-password"}
    put = httpx.put(
        gw.api + "/user/externalKeys",
        json={"storageIdentifier": "irods", "credential": wrong},
        headers={"apikey": key},
    )
    assert put.status_code == 200
    with gw.client(key) as c:
        r = c.get("/path/irods?action=list")
        is_error(r, 401, 40103)
        assert "not-the-password" not in r.text
        is_error(c.put("/path/irods/x.txt", content=b"x", headers=OCTET), 401, 40103)
    with gw.client(key) as c:  # no key stored for this mount at all
        is_error(c.get("/path/shared?action=list"), 401, 40104)


def test_server_gone_is_503(client: httpx.Client) -> None:
    is_error(client.get("/path/gone?action=list"), 503, 50301)
    is_error(client.put("/path/gone/f.txt", content=b"x", headers=OCTET), 503, 50301)


def test_permission_denied_is_403(client: httpx.Client) -> None:
    assert client.get("/path/shared/readable.txt?action=content").content == (b"bob's readable.txt")
    # Strict ACLs (iRODS' default policy) hide what you may not read from GenQuery, so an
    # unreadable object is "not found", not "forbidden" — as on a real iRODS.
    is_error(client.get("/path/shared/private.txt?action=content"), 404, 40401)
    is_error(client.put("/path/shared/new.txt", content=b"x", headers=OCTET), 403, 40302)
    is_error(client.delete("/path/shared/readable.txt"), 403, 40302)


# --- ticket delegation --------------------------------------------------------------------


def _ticket_session(srv: IrodsTestServer, ticket: str) -> iRODSSession:
    """What a job does with a delegated ticket: an anonymous session presenting it."""
    s = iRODSSession(
        host=srv.host, port=srv.port, zone=srv.zone, user="anonymous", password="",
        connection_timeout=10,
    )  # fmt: skip
    s.ticket__ = ticket
    return s


def _read(srv: IrodsTestServer, ticket: str, full: str) -> bytes:
    s = _ticket_session(srv, ticket)
    try:
        with s.data_objects.open(full, "r", create=False) as f:
            return bytes(f.read())
    finally:
        s.cleanup()


def _native(gw: Running, tok: str, path: str, method: str = "GET") -> dict[str, Any]:
    r = httpx.post(
        gw.api + "/token/native", json={"path": path, "method": method}, headers=bearer(tok)
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body: dict[str, Any] = r.json()
    return body


def _exp(tok: str) -> int:
    import json

    payload = tok.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


def _revoke(gw: Running, **form: str) -> int:
    r = httpx.post(gw.api + "/token/revoke", data=form, headers={"apikey": gw.key})
    assert r.status_code == 200, r.text
    return int(r.json()["revoked"])


def test_read_ticket_works_until_the_token_is_revoked(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/irods/{folder}/in.txt", content=b"ticketed input", headers=OCTET)
    tok = token(gw, f"storage.read:/irods/{folder}", lifetime=600)
    body = _native(gw, tok, f"/irods/{folder}/in.txt")
    assert body["kind"] == "irods_ticket" and body["method"] == "GET"
    assert body["expiresAt"] == _exp(tok)  # expires with the token, not before
    full = body["headers"]["X-iRODS-Path"]
    assert body["headers"]["X-iRODS-Zone"] == irods.zone
    assert int(body["headers"]["X-iRODS-Port"]) == irods.port
    ticket = body["value"]
    assert _read(irods, ticket, full) == b"ticketed input"
    s = _ticket_session(irods, ticket)
    try:
        with pytest.raises(CAT_NO_ACCESS_PERMISSION):  # a read ticket never writes
            s.data_objects.open(full, "w").close()
    finally:
        s.cleanup()
    client.put(f"/path/irods/{folder}/other.txt", content=b"o", headers=OCTET)
    with pytest.raises(CAT_NO_ACCESS_PERMISSION):  # nor reads a neighbour
        _read(irods, ticket, full.rsplit("/", 1)[0] + "/other.txt")
    jti = gw.gateway.tokens.decode(tok).jti
    assert gw.gateway.grants.count(jti) == 1
    with gw.gateway.store.transaction(write=False) as tx:
        (blob,) = tx.query_one("SELECT secret FROM native_grants WHERE jti = ?", (jti,)) or ("",)
    assert ticket.encode() not in bytes(blob)
    assert _revoke(gw, jti=jti) == 1
    with pytest.raises(CAT_TICKET_INVALID):
        _read(irods, ticket, full)
    assert gw.gateway.grants.count(jti) == 0
    assert client.get(f"/path/irods/{folder}/in.txt?action=content").content == b"ticketed input"


def test_a_native_credential_is_counted_once_and_a_refusal_not(
    gw: Running, client: httpx.Client, folder: str
) -> None:
    """fedgate_tokens_issued_total{kind="native"} counts the credentials handed out."""
    client.put(f"/path/irods/{folder}/c.txt", content=b"counted", headers=OCTET)
    tok = token(gw, f"storage.read:/irods/{folder}/c.txt", lifetime=600)
    before = scrape(gw.url)
    _native(gw, tok, f"/irods/{folder}/c.txt")
    refused = httpx.post(
        gw.api + "/token/native", json={"path": f"/irods/{folder}/d.txt"}, headers=bearer(tok)
    )
    is_error(refused, 403, 40301)
    after = scrape(gw.url)
    issued = "fedgate_tokens_issued_total"
    assert value(after, issued, kind="native") - value(before, issued, kind="native") == 1
    assert value(after, issued, kind="exchange") == value(before, issued, kind="exchange")


def test_write_ticket_for_put(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    tok = token(gw, f"storage.create:/irods/{folder}/out", lifetime=300)
    client.put(f"/path/irods/{folder}/out")
    body = _native(gw, tok, f"/irods/{folder}/out/result.bin", "PUT")
    assert body["kind"] == "irods_ticket" and body["method"] == "PUT"
    s = _ticket_session(irods, body["value"])
    try:
        with s.data_objects.open(body["headers"]["X-iRODS-Path"], "w") as f:
            f.write(b"job output")
    finally:
        s.cleanup()
    got = client.get(f"/path/irods/{folder}/out/result.bin?action=content")
    assert got.content == b"job output"
    # create-only: no ticket to overwrite what now exists
    r = httpx.post(
        gw.api + "/token/native",
        json={"path": f"/irods/{folder}/out/result.bin", "method": "PUT"},
        headers=bearer(tok),
    )
    is_error(r, 403, 40301)


def test_ticket_carries_the_tokens_use_count(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/irods/{folder}/once.txt", content=b"counted", headers=OCTET)
    tok = token(gw, f"storage.read:/irods/{folder}", uses=2)
    body = _native(gw, tok, f"/irods/{folder}/once.txt")  # spends one of the token's uses
    full = body["headers"]["X-iRODS-Path"]
    assert _read(irods, body["value"], full) == b"counted"
    assert _read(irods, body["value"], full) == b"counted"
    with pytest.raises(CAT_TICKET_USES_EXCEEDED):
        _read(irods, body["value"], full)


def test_tickets_share_the_tokens_counter_never_n_plus_n_minus_1(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    """A job asking again and again gets no more uses than its token had: the first
    ticket takes them all, from the same counter, and the token is then spent."""
    client.put(f"/path/irods/{folder}/n.txt", content=b"counted", headers=OCTET)
    tok = token(gw, f"storage.read:/irods/{folder}", uses=3)
    body = _native(gw, tok, f"/irods/{folder}/n.txt")
    again = httpx.post(
        gw.api + "/token/native", json={"path": f"/irods/{folder}/n.txt"}, headers=bearer(tok)
    )
    is_error(again, 401, 40102)  # no use left to ask with, nor to give another ticket
    is_error(httpx.get(gw.api + f"/path/irods/{folder}/n.txt?action=content",
                       headers=bearer(tok)), 401, 40102)  # fmt: skip
    full = body["headers"]["X-iRODS-Path"]
    for _ in range(3):
        assert _read(irods, body["value"], full) == b"counted"
    with pytest.raises(CAT_TICKET_USES_EXCEEDED):
        _read(irods, body["value"], full)


def test_a_narrowed_tokens_ticket_takes_its_uses_from_the_parent_too(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/irods/{folder}/p.txt", content=b"parent", headers=OCTET)
    parent = token(gw, f"storage.read:/irods/{folder}", uses=4)
    child = exchange(
        gw,
        f"storage.read:/irods/{folder}/p.txt",
        subject=parent,
        subject_type="urn:ietf:params:oauth:token-type:access_token",
        uses="2",
    ).json()["access_token"]
    body = _native(gw, child, f"/irods/{folder}/p.txt")  # the child's 2 uses, all of them
    full = body["headers"]["X-iRODS-Path"]
    assert [_read(irods, body["value"], full) for _ in range(2)] == [b"parent"] * 2
    with pytest.raises(CAT_TICKET_USES_EXCEEDED):
        _read(irods, body["value"], full)
    # The parent lost both of the child's uses (the ask, then the ticket): 2 left.
    left = gw.gateway.tokens.remaining_uses(gw.gateway.tokens.decode(parent))
    assert left == 2
    second = _native(gw, parent, f"/irods/{folder}/p.txt")  # 1 + the 1 left after asking
    assert [_read(irods, second["value"], full) for _ in range(2)] == [b"parent"] * 2
    with pytest.raises(CAT_TICKET_USES_EXCEEDED):
        _read(irods, second["value"], full)


def test_create_only_write_ticket_opens_once(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    """A create-only token's write ticket writes its new file once; it cannot come back
    and replace what it wrote."""
    tok = token(gw, f"storage.create:/irods/{folder}")
    body = _native(gw, tok, f"/irods/{folder}/once.bin", "PUT")
    full = body["headers"]["X-iRODS-Path"]
    s = _ticket_session(irods, body["value"])
    try:
        with s.data_objects.open(full, "w") as f:
            f.write(b"first")
        with pytest.raises(CAT_TICKET_USES_EXCEEDED), s.data_objects.open(full, "w") as f:
            f.write(b"replaced")
    finally:
        s.cleanup()
    assert client.get(f"/path/irods/{folder}/once.bin?action=content").content == b"first"


def test_execution_revocation_deletes_its_tickets(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/irods/{folder}/e.txt", content=b"exec", headers=OCTET)
    execution = f"exec-{uuid.uuid4().hex[:8]}"
    parent = token(gw, f"storage.read:/irods/{folder}", execution_id=execution)
    # A token narrowed from the execution's token: its ticket must go too.
    child = exchange(
        gw,
        f"storage.read:/irods/{folder}/e.txt",
        subject=parent,
        subject_type="urn:ietf:params:oauth:token-type:access_token",
    ).json()["access_token"]
    tickets = [_native(gw, t, f"/irods/{folder}/e.txt") for t in (parent, child)]
    full = tickets[0]["headers"]["X-iRODS-Path"]
    assert all(_read(irods, t["value"], full) == b"exec" for t in tickets)
    assert _revoke(gw, execution_id=execution) == 2
    for t in tickets:
        with pytest.raises(CAT_TICKET_INVALID):
            _read(irods, t["value"], full)


def test_deleting_the_storage_key_deletes_tickets(
    gw: Running, irods: IrodsTestServer, tmp_path: Path
) -> None:
    _, key = gw.gateway.users.add_user(f"k{uuid.uuid4().hex[:6]}")
    alice = {"kind": "user_password", "user": "alice", "password": irods.users["alice"]}
    with gw.client(key) as c:
        put = c.put("/user/externalKeys", json={"storageIdentifier": "irods", "credential": alice})
        assert put.status_code == 200
        folder = f"k-{uuid.uuid4().hex[:8]}"
        assert c.put(f"/path/irods/{folder}").status_code == 201
        c.put(f"/path/irods/{folder}/k.txt", content=b"keyed", headers=OCTET)
        tok = token(gw, f"storage.read:/irods/{folder}", subject=key)
        body = _native(gw, tok, f"/irods/{folder}/k.txt")
        full = body["headers"]["X-iRODS-Path"]
        assert _read(irods, body["value"], full) == b"keyed"
        assert c.delete("/user/externalKeys/irods").status_code == 204
    with pytest.raises(CAT_TICKET_INVALID):
        _read(irods, body["value"], full)
    is_error(httpx.get(gw.api + f"/path/irods/{folder}?action=list", headers=bearer(tok)), 401)


def test_failed_ticket_deletion_is_retried_by_the_sweep(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/irods/{folder}/s.txt", content=b"swept", headers=OCTET)
    tok = token(gw, f"storage.read:/irods/{folder}")
    body = _native(gw, tok, f"/irods/{folder}/s.txt")
    full = body["headers"]["X-iRODS-Path"]
    jti = gw.gateway.tokens.decode(tok).jti
    grants = gw.gateway.grants
    real = grants._delete_one
    grants._delete_one = lambda row: False  # type: ignore[method-assign]  # backend "down"
    try:
        assert _revoke(gw, jti=jti) == 1
    finally:
        grants._delete_one = real  # type: ignore[method-assign]
    assert _read(irods, body["value"], full) == b"swept"  # still alive: deletion failed
    assert grants.count(jti) == 1
    assert grants.sweep() >= 1
    assert grants.count(jti) == 0
    with pytest.raises(CAT_TICKET_INVALID):
        _read(irods, body["value"], full)


def test_native_needs_a_covering_token(gw: Running, folder: str) -> None:
    tok = token(gw, f"storage.read:/irods/{folder}/a")
    r = httpx.post(
        gw.api + "/token/native", json={"path": f"/irods/{folder}/b"}, headers=bearer(tok)
    )
    is_error(r, 403, 40301)
    r = httpx.post(
        gw.api + "/token/native",
        json={"path": f"/irods/{folder}/a", "format": "vip"},
        headers=bearer(tok),
    )
    is_error(r, 501, 50101)


def test_sweep_forgets_expired_grants_and_deletes_their_tickets(
    gw: Running, irods: IrodsTestServer, client: httpx.Client, folder: str
) -> None:
    client.put(f"/path/irods/{folder}/x.txt", content=b"expiring", headers=OCTET)
    tok = token(gw, f"storage.read:/irods/{folder}")
    body = _native(gw, tok, f"/irods/{folder}/x.txt")
    full = body["headers"]["X-iRODS-Path"]
    jti = gw.gateway.tokens.decode(tok).jti
    grants = gw.gateway.grants
    grants.sweep()
    assert grants.count(jti) == 1  # a live grant is kept
    assert _read(irods, body["value"], full) == b"expiring"
    with gw.gateway.store.transaction() as tx:  # as if its token had run out
        tx.execute("UPDATE native_grants SET expires = 0 WHERE jti = ?", (jti,))
    assert grants.sweep() >= 1
    assert grants.count(jti) == 0
    with pytest.raises(CAT_TICKET_INVALID):
        _read(irods, body["value"], full)
