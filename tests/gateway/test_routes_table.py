"""Every route to an operation, one table: each guarantee is checked on every way a request
can reach the storage operation it protects, and a route the table does not know fails.

Guarantees (issue 27):
- create-only never overwrites (raw PUT, chunked PUT, JSON ``File``, ``Archive``, mkdir,
  the native-credential route);
- read scope never shows a sibling (list, content, tar.gz, properties, exists, md5, native,
  through a prefix sibling ``/local/ab`` and through a symlink);
- revoke touches only the caller's own tokens (every form of ``POST /token/revoke``);
- a use count is spent once (every route that authenticates a Bearer token);
- expiry holds (the same routes, with an injected clock moved past the expiry).

Each is checked on the file system or by using the victim token afterwards, not only on
the status code. Cases that fail until issue 18's fixes land are marked
``xfail(strict=True)``: they flip to a failure the day they pass, so the mark goes.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route

import tokens.service
from adapters.posix import STAGING
from gateway.app import create_app
from tests.clock import FakeClock
from tests.server import Running, local_settings, running

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
ACCESS = "urn:ietf:params:oauth:token-type:access_token"
OCTET = {"Content-Type": "application/octet-stream"}
CARMIN_JSON = {"Content-Type": "application/carmin+json"}


def issue18(point: int, why: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"issue 18 point {point}: {why}")


# --- the table of routes ---------------------------------------------------------------

# Every route the app serves, with the ways (below) through which each reaches a storage
# or token operation, or why it reaches none. A new route fails
# test_every_route_is_in_the_table until it is added here and to the guarantees it reaches.
ROUTE_TABLE: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "none: static document",
    ("GET", "/rest/openapi.json"): "none: static document",
    ("GET", "/healthz"): "none: liveness",
    ("GET", "/readyz"): "none: readiness (no caller data)",
    ("GET", "/metrics"): "none: counters",
    ("GET", "/.well-known/jwks.json"): "none: public keys",
    ("GET", "/rest/.well-known/jwks.json"): "none: public keys",
    ("GET", "/rest/platform"): "none: platform properties",
    ("PUT", "/rest/platform"): "auth: checks a key (uses, expiry)",
    ("POST", "/rest/authenticate"): "auth: password -> API key",
    ("GET", "/rest/path"): "read: the virtual root (list of mounts)",
    ("GET", "/rest/path/{completePath:path}"): "read: exists, properties, list, md5, content",
    ("PUT", "/rest/path/{completePath:path}"): "write: raw, chunked, JSON File, Archive, mkdir",
    ("DELETE", "/rest/path/{completePath:path}"): "write: delete (modify)",
    ("POST", "/rest/token"): "token: exchange and narrowing",
    ("GET", "/rest/token"): "token: the caller's live tokens (ids and scopes)",
    ("POST", "/rest/token/revoke"): "revoke: token, jti, token_id, execution_id",
    ("POST", "/rest/token/native"): "write/read: native credential (GET, PUT)",
    ("PUT", "/rest/user/externalKeys"): "vault: store a credential",
    ("POST", "/rest/user/externalKeys"): "vault: store a credential",
    ("GET", "/rest/user/externalKeys"): "vault: list (no secret)",
    ("DELETE", "/rest/user/externalKeys/{storageIdentifier}"): "vault: delete, revokes tokens",
    ("GET", "/rest/externalPlatforms"): "none: mount list",
    ("POST", "/rest/explain"): "auth: explains a decision",
    ("GET", "/rest/audit"): "auth: own events",
    ("GET", "/rest/resolve"): "read: maps a native URI to a path",
}


# Routes other issues are adding (the WebDAV door, the web page, per-key API keys): a row
# here must match a served route once it lands, and the guarantees below cover it when
# the app serves it.
IN_FLIGHT: dict[tuple[str, str], str] = {
    ("GET", "/"): "none: the web page",
    ("GET", "/ui/{name}"): "none: the web page's assets",
    ("GET", "/readyz/gateway"): "none: readiness of the gateway alone",
    ("GET", "/rest/user/apiKeys"): "auth: the caller's API keys (ids only)",
    ("DELETE", "/rest/user/apiKeys/{keyId}"): "auth: revoke one API key and its tokens",
    **{
        (method, "/webdav" + tail): "read/write: the WebDAV door (covered as WebDAV ways)"
        for method in ("GET", "PUT", "DELETE", "MKCOL", "MOVE", "COPY", "OPTIONS", "PROPFIND")
        for tail in ("", "/", "/{completePath:path}")
    },
}


def app_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from app_routes(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, prefix + route.path
        else:  # a WebSocket route or a raw ASGI mount: the table must say what it is
            yield type(route).__name__, prefix + str(getattr(route, "path", "?"))


def test_every_route_is_in_the_table(tmp_path: Path) -> None:
    settings = local_settings(tmp_path)
    served = set(app_routes(list(create_app(settings).routes)))
    unknown = sorted(served - ROUTE_TABLE.keys() - IN_FLIGHT.keys())
    gone = sorted(ROUTE_TABLE.keys() - served)
    assert not unknown, f"routes missing from the table (add them and their guarantees): {unknown}"
    assert not gone, f"table rows for routes the app no longer serves: {gone}"


# --- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path)) as r:
        yield r


def _serves_webdav() -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        served = set(app_routes(list(create_app(local_settings(Path(tmp))).routes)))
    return ("PUT", "/webdav/{completePath:path}") in served


WEBDAV = _serves_webdav()


def dav(c: httpx.Client, method: str, path: str, **kw: object) -> httpx.Response:
    """A WebDAV request with the client's credentials (the door is outside the prefix)."""
    url = str(c.base_url).rstrip("/").removesuffix("/rest") + "/webdav" + path
    headers = dict(c.headers) | dict(kw.pop("headers", {}))  # type: ignore[call-overload]
    return httpx.request(method, url, headers=headers, **kw)  # type: ignore[arg-type]


def exchange(gw: Running, scope: str, key: str | None = None, **extra: object) -> str:
    form = {
        "grant_type": GRANT,
        "subject_token": key or gw.key,
        "subject_token_type": API_KEY_TYPE,
        "scope": scope,
        **{k: str(v) for k, v in extra.items()},
    }
    r = httpx.post(gw.api + "/token", data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def narrow(gw: Running, parent: str, scope: str) -> str:
    form = {
        "grant_type": GRANT,
        "subject_token": parent,
        "subject_token_type": ACCESS,
        "scope": scope,
    }
    r = httpx.post(gw.api + "/token", data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def as_bearer(gw: Running, token: str) -> httpx.Client:
    return httpx.Client(base_url=gw.api, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def works(gw: Running, token: str, path: str = "/local") -> bool:
    r = httpx.get(
        f"{gw.api}/path{path}?action=exists", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


def jti_of(token: str) -> str:
    import json

    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under the mount (staging included): name -> bytes, None for a folder."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir() and not p.is_symlink():
            if not rel.startswith(STAGING):  # the staging folders come and go; files stay
                out[rel] = None
        else:
            out[rel] = p.read_bytes()
    return out


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def _upload_data(kind: str, raw: bytes) -> dict[str, str]:
    return {
        "type": kind,
        "base64Content": base64.b64encode(raw).decode(),
        "md5": hashlib.md5(raw).hexdigest(),
    }


# --- guarantee 1: create-only never overwrites ------------------------------------------


@dataclass(frozen=True)
class Write:
    """One way to put ``data`` at ``folder/name`` (an existing folder)."""

    name: str
    send: Callable[[httpx.Client, str, str, bytes], httpx.Response]
    # What the way writes when it succeeds: a file (data), or a folder (mkdir)
    makes_folder: bool = False


def _raw(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    return c.put(f"/path{folder}/{name}", content=data, headers=OCTET)


def _chunked(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    return c.put(f"/path{folder}/{name}", content=iter([data[:3], data[3:]]), headers=OCTET)


def _json_file(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    return c.put(f"/path{folder}/{name}", json=_upload_data("File", data), headers=CARMIN_JSON)


def _archive(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    body = _upload_data("Archive", _zip({name: data}))
    return c.put(f"/path{folder}", json=body, headers=CARMIN_JSON)


def _mkdir(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    return c.put(f"/path{folder}/{name}")


def _native(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    r = c.post("/token/native", data={"path": f"{folder}/{name}", "method": "PUT"})
    if r.status_code != 200:
        return r
    grant = r.json()  # a credential was handed out: use it as a job would
    return httpx.put(grant["url"] or grant["value"], content=data, headers=grant["headers"])


def _dav_put(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    return dav(c, "PUT", f"{folder}/{name}", content=data)


def _dav_mkcol(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    return dav(c, "MKCOL", f"{folder}/{name}")


def _dav_move(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    """Upload under a fresh name, then MOVE it onto ``name`` (Overwrite: T)."""
    staged = dav(c, "PUT", f"{folder}/incoming-{name}", content=data)
    if staged.status_code not in (200, 201, 204):
        return staged
    dest = str(c.base_url).rstrip("/").removesuffix("/rest") + f"/webdav{folder}/{name}"
    move = {"Destination": dest, "Overwrite": "T"}
    return dav(c, "MOVE", f"{folder}/incoming-{name}", headers=move)


def _dav_copy(c: httpx.Client, folder: str, name: str, data: bytes) -> httpx.Response:
    """Upload under a fresh name, then COPY it onto ``name`` (Overwrite: T). The HTTP-TPC
    pull (COPY with Source) is tested in tests/webdav/test_copy.py: it needs a peer."""
    staged = dav(c, "PUT", f"{folder}/incoming-{name}", content=data)
    if staged.status_code not in (200, 201, 204):
        return staged
    dest = str(c.base_url).rstrip("/").removesuffix("/rest") + f"/webdav{folder}/{name}"
    return dav(c, "COPY", f"{folder}/incoming-{name}", headers={"Destination": dest})


WRITES = [
    Write("raw PUT", _raw),
    Write("chunked PUT", _chunked),
    Write("JSON File", _json_file),
    Write("Archive", _archive),
    Write("mkdir", _mkdir, makes_folder=True),
    Write("native PUT", _native),
]
if WEBDAV:
    WRITES += [
        Write("WebDAV PUT", _dav_put),
        Write("WebDAV MKCOL", _dav_mkcol, makes_folder=True),
        Write("WebDAV MOVE", _dav_move),
        Write("WebDAV COPY", _dav_copy),
    ]
REFUSED = (403, 409, 412, 501)


@pytest.mark.parametrize("way", WRITES, ids=lambda w: w.name)
def test_create_only_never_overwrites(gw: Running, way: Write) -> None:
    (gw.data / "w").mkdir()
    (gw.data / "w" / "f").write_bytes(b"old")
    before = snapshot(gw.data)
    with as_bearer(gw, exchange(gw, "storage.create:/local/w storage.read:/local/w")) as c:
        r = way.send(c, "/local/w", "f", b"new bytes")
    assert r.status_code in (*REFUSED, 405), r.text
    after = snapshot(gw.data)
    if way.name in ("WebDAV MOVE", "WebDAV COPY"):  # the first step, a new file, was allowed
        after = {k: v for k, v in after.items() if "incoming-" not in k}
    assert after == before  # nothing replaced, nothing left behind


@pytest.mark.parametrize("way", WRITES, ids=lambda w: w.name)
def test_create_only_creates(gw: Running, way: Write) -> None:
    """The same token and way on a new name: the table is not refusing everything."""
    (gw.data / "w").mkdir()
    folder = "/local/w"
    if way.name == "Archive":  # unpacking into an existing folder is a modify
        folder = "/local/w/new"
    with as_bearer(gw, exchange(gw, "storage.create:/local/w")) as c:
        r = way.send(c, folder, "g", b"new bytes")
    if way.name == "native PUT":  # a local folder has no native credential to give
        assert r.status_code == 501, r.text
        assert not (gw.data / "w" / "g").exists()
        return
    if way.name == "WebDAV MOVE":  # a MOVE is a create and a delete: needs modify
        assert r.status_code == 403, r.text
        return
    if way.name == "WebDAV COPY":  # a COPY reads its source: a create-only token may not
        assert r.status_code == 403, r.text
        assert not (gw.data / "w" / "g").exists()
        return
    assert r.status_code in (201, 204), r.text
    target = gw.data / folder.removeprefix("/local/") / "g"
    assert target.is_dir() if way.makes_folder else target.read_bytes() == b"new bytes"


def test_create_only_upload_never_replaces_a_file_that_appears_meanwhile(gw: Running) -> None:
    """Raw PUT: the gateway decides "create" at the start; the file appears before the
    last byte; the commit must not replace it."""
    import socket

    from adapters.posix import STAGING

    (gw.data / "w").mkdir()
    tok = exchange(gw, "storage.create:/local/w")
    head = (
        f"PUT /rest/path/local/w/late HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
        "Content-Type: application/octet-stream\r\nContent-Length: 2000000\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    port = int(gw.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head + b"x" * 1_000_000)
        staging = gw.data / STAGING
        for _ in range(3000):  # the upload is under way once its temporary exists
            if staging.exists() and any(p.is_file() for p in staging.rglob("*")):
                break
            threading.Event().wait(0.01)
        (gw.data / "w" / "late").write_bytes(b"written meanwhile")
        s.sendall(b"x" * 1_000_000)
        answer = s.recv(4096)
    assert b" 201 " not in answer.split(b"\r\n", 1)[0], answer[:200]
    assert (gw.data / "w" / "late").read_bytes() == b"written meanwhile"


# --- guarantee 2: read scope never shows a sibling --------------------------------------


@dataclass(frozen=True)
class Read:
    name: str
    send: Callable[[httpx.Client, str], httpx.Response]


def _get(action: str) -> Callable[[httpx.Client, str], httpx.Response]:
    return lambda c, path: c.get(f"/path{path}?action={action}")


def _native_get(c: httpx.Client, path: str) -> httpx.Response:
    return c.post("/token/native", data={"path": path, "method": "GET"})


def _propfind(c: httpx.Client, path: str) -> httpx.Response:
    return dav(c, "PROPFIND", path, headers={"Depth": "1"})


READS = [
    Read("exists", _get("exists")),
    Read("properties", _get("properties")),
    Read("list", _get("list")),
    Read("md5", _get("md5")),
    Read("content", _get("content")),
    Read("native GET", _native_get),
]
if WEBDAV:
    READS += [
        Read("WebDAV GET", lambda c, path: dav(c, "GET", path)),
        Read("WebDAV PROPFIND", _propfind),
    ]


@pytest.fixture
def siblings(gw: Running) -> Path:
    """``/local/a`` (granted), ``/local/ab`` (its name starts with a's) and ``/local/b``."""
    for folder in ("a", "ab", "b"):
        (gw.data / folder).mkdir()
        (gw.data / folder / "secret.txt").write_text(f"secret of {folder}")
    return gw.data


# Targets outside storage.read:/local/a, for every read way: the parent (its listing and
# tar.gz show the siblings), the prefix sibling, its file, the other sibling's file.
OUTSIDE = ["/local", "/local/ab", "/local/ab/secret.txt", "/local/b/secret.txt"]


@pytest.mark.parametrize("target", OUTSIDE)
@pytest.mark.parametrize("way", READS, ids=lambda w: w.name)
def test_read_scope_never_shows_a_sibling(
    gw: Running, siblings: Path, way: Read, target: str
) -> None:
    with as_bearer(gw, exchange(gw, "storage.read:/local/a")) as c:
        r = way.send(c, target)
    # 403; a native credential is for a file only, so /local itself is a 400
    assert r.status_code == 403 or (way.name == "native GET" and target == "/local"), r.text
    assert r.status_code >= 400
    assert b"secret of" not in r.content


@pytest.mark.parametrize("way", READS, ids=lambda w: w.name)
def test_read_scope_reads_inside(gw: Running, siblings: Path, way: Read) -> None:
    target = "/local/a" if way.name in ("list", "WebDAV PROPFIND") else "/local/a/secret.txt"
    with as_bearer(gw, exchange(gw, "storage.read:/local/a")) as c:
        r = way.send(c, target)
    if way.name == "native GET":
        assert r.status_code == 501, r.text  # nothing native to hand out for a local folder
    else:
        assert r.status_code in (200, 207), r.text


def test_listing_the_granted_folder_shows_only_it(gw: Running, siblings: Path) -> None:
    with as_bearer(gw, exchange(gw, "storage.read:/local/a")) as c:
        names = [e["platformPath"] for e in c.get("/path/local/a?action=list").json()]
        root = [e["platformPath"] for e in c.get("/path?action=list").json()]
    assert names == ["/local/a/secret.txt"]
    assert root == []  # the token cannot read the mount's root, so the root lists nothing


@pytest.mark.parametrize("way", [w for w in READS if w.name != "exists"], ids=lambda w: w.name)
def test_read_scope_does_not_follow_a_link_to_a_sibling(
    gw: Running, siblings: Path, way: Read
) -> None:
    os.symlink("../ab", gw.data / "a" / "link")
    with as_bearer(gw, exchange(gw, "storage.read:/local/a")) as c:
        r = way.send(c, "/local/a/link/secret.txt")
    assert r.status_code in (403, 404, 501), r.text  # 501: native, nothing to hand out
    assert b"secret of ab" not in r.content


def test_tar_of_the_granted_folder_leaves_linked_siblings_out(gw: Running, siblings: Path) -> None:
    import tarfile

    os.symlink("../ab", gw.data / "a" / "link")
    with as_bearer(gw, exchange(gw, "storage.read:/local/a")) as c:
        r = c.get("/path/local/a?action=content")
    assert r.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                f = tar.extractfile(member)
                assert f is not None and b"secret of ab" not in f.read(), member.name


# --- guarantee 3: revoke touches only the caller's own tokens ----------------------------


@dataclass(frozen=True)
class Revoke:
    """One form of ``POST /token/revoke`` aimed at the victim token (its token, its id or
    its execution), sent as a form or as JSON."""

    name: str
    fields: Callable[[str, str], dict[str, str]]  # (victim token, victim execution)
    as_json: bool = False


REVOKES = [
    Revoke("token", lambda t, e: {"token": t}),
    Revoke("jti", lambda t, e: {"jti": jti_of(t)}),
    Revoke("token_id", lambda t, e: {"token_id": jti_of(t)}),
    Revoke("execution_id", lambda t, e: {"execution_id": e}),
    Revoke("executionId", lambda t, e: {"executionId": e}),
    Revoke("jti as JSON", lambda t, e: {"jti": jti_of(t)}, as_json=True),
    Revoke("execution_id as JSON", lambda t, e: {"execution_id": e}, as_json=True),
]


def _revoke(gw: Running, headers: dict[str, str], way: Revoke, victim: str) -> httpx.Response:
    fields = way.fields(victim, "exec-victim")
    if way.as_json:
        return httpx.post(gw.api + "/token/revoke", json=fields, headers=headers)
    return httpx.post(gw.api + "/token/revoke", data=fields, headers=headers)


@pytest.mark.parametrize("way", REVOKES, ids=lambda w: w.name)
def test_a_user_key_cannot_revoke_another_users_tokens(gw: Running, way: Revoke) -> None:
    _, bob_key = gw.gateway.users.add_user("bob")
    _, eve_key = gw.gateway.users.add_user("eve")
    victim = exchange(gw, "storage.read:/local", key=bob_key, execution_id="exec-victim")
    r = _revoke(gw, {"apikey": eve_key}, way, victim)
    assert r.status_code in (200, 403), r.text
    assert works(gw, victim), f"eve's key revoked bob's token through {way.name}"


@pytest.mark.parametrize("way", REVOKES, ids=lambda w: w.name)
def test_a_token_cannot_revoke_its_siblings(gw: Running, way: Revoke) -> None:
    """Two executions of one (non-admin) user: the first one's token aims at the second's."""
    _, bob_key = gw.gateway.users.add_user("bob")
    attacker = exchange(gw, "storage.read:/local", key=bob_key, execution_id="exec-attacker")
    victim = exchange(gw, "storage.read:/local", key=bob_key, execution_id="exec-victim")
    r = _revoke(gw, {"Authorization": f"Bearer {attacker}"}, way, victim)
    assert r.status_code in (200, 401, 403), r.text
    assert works(gw, victim), f"a sibling's token revoked it through {way.name}"


@pytest.mark.parametrize("way", REVOKES, ids=lambda w: w.name)
def test_an_admins_token_cannot_revoke_other_tokens(gw: Running, way: Revoke) -> None:
    _, bob_key = gw.gateway.users.add_user("bob")
    attacker = exchange(gw, "storage.read:/local", execution_id="exec-attacker")  # admin's
    victim = exchange(gw, "storage.read:/local", key=bob_key, execution_id="exec-victim")
    r = _revoke(gw, {"Authorization": f"Bearer {attacker}"}, way, victim)
    assert r.status_code in (200, 401, 403), r.text
    assert works(gw, victim), f"an admin's job token revoked bob's through {way.name}"


@pytest.mark.parametrize("way", REVOKES[:3], ids=lambda w: w.name)
def test_a_token_revokes_itself_and_what_was_narrowed_from_it(gw: Running, way: Revoke) -> None:
    parent = exchange(gw, "storage.read:/local", execution_id="exec-victim")
    child = narrow(gw, parent, "storage.read:/local")
    other = exchange(gw, "storage.read:/local", execution_id="exec-other")
    r = _revoke(gw, {"Authorization": f"Bearer {parent}"}, way, parent)
    assert r.status_code == 200, r.text
    assert not works(gw, parent) and not works(gw, child)
    assert works(gw, other)


# --- guarantee 4: a use count is spent once ---------------------------------------------


@dataclass(frozen=True)
class Use:
    name: str
    send: Callable[[Running, httpx.Client, str], httpx.Response]
    ok: tuple[int, ...] = (200,)


def _narrow_use(gw: Running, c: httpx.Client, tok: str) -> httpx.Response:
    form = {
        "grant_type": GRANT,
        "subject_token": tok,
        "subject_token_type": ACCESS,
        "scope": "storage.read:/local/u",
    }
    return httpx.post(gw.api + "/token", data=form)


USES = [
    Use("exists", lambda gw, c, t: c.get("/path/local/u/f?action=exists")),
    Use("properties", lambda gw, c, t: c.get("/path/local/u/f?action=properties")),
    Use("list", lambda gw, c, t: c.get("/path/local/u?action=list")),
    Use("md5", lambda gw, c, t: c.get("/path/local/u/f?action=md5")),
    Use("content", lambda gw, c, t: c.get("/path/local/u/f?action=content")),
    Use("tar.gz", lambda gw, c, t: c.get("/path/local/u?action=content")),
    Use("raw PUT", lambda gw, c, t: _raw(c, "/local/u", "new", b"x"), (201,)),
    Use("JSON File", lambda gw, c, t: _json_file(c, "/local/u", "new", b"x"), (201,)),
    Use("Archive", lambda gw, c, t: _archive(c, "/local/u", "new", b"x"), (201,)),
    Use("mkdir", lambda gw, c, t: _mkdir(c, "/local/u", "new", b""), (201,)),
    Use("DELETE", lambda gw, c, t: c.delete("/path/local/u/f"), (204,)),
    Use("native GET", lambda gw, c, t: _native_get(c, "/local/u/f"), (501,)),
]
if WEBDAV:
    USES += [
        Use("WebDAV GET", lambda gw, c, t: dav(c, "GET", "/local/u/f")),
        Use("WebDAV PUT", lambda gw, c, t: _dav_put(c, "/local/u", "new", b"x"), (201, 204)),
    ]


@pytest.mark.parametrize("way", USES, ids=lambda w: w.name)
def test_a_use_count_is_spent_once(gw: Running, way: Use) -> None:
    (gw.data / "u").mkdir()
    (gw.data / "u" / "f").write_bytes(b"once")
    tok = exchange(gw, "storage.read:/local/u storage.modify:/local/u", uses=1)
    with as_bearer(gw, tok) as c:
        first = way.send(gw, c, tok)
        assert first.status_code in way.ok, first.text
        before = snapshot(gw.data)
        again = way.send(gw, c, tok)
    assert again.status_code == 401, again.text
    assert snapshot(gw.data) == before  # the second request did nothing
    assert not works(gw, tok, "/local/u")


def test_narrowing_shares_the_use_count(gw: Running) -> None:
    """Narrowing is not a use, but the children share the parent's count: two children
    of a one-use token spend one use between them."""
    (gw.data / "u").mkdir()
    tok = exchange(gw, "storage.read:/local/u", uses=1)
    with httpx.Client() as c:
        first, second = _narrow_use(gw, c, tok), _narrow_use(gw, c, tok)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    children = [first.json()["access_token"], second.json()["access_token"]]
    assert works(gw, children[0], "/local/u")
    assert not works(gw, children[1], "/local/u")
    assert not works(gw, tok, "/local/u")


def test_a_use_count_is_spent_once_under_concurrency(gw: Running) -> None:
    (gw.data / "f").write_bytes(b"once")
    tok = exchange(gw, "storage.read:/local", uses=3)
    with as_bearer(gw, tok) as c, ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda _: c.get("/path/local/f?action=content").status_code, range(24))
        )
    assert sorted(codes) == [200] * 3 + [401] * 21


# --- guarantee 5: expiry holds ----------------------------------------------------------


EXPIRY_WAYS = [
    *USES,
    Use("narrowing", _narrow_use),
    Use("revoke itself", lambda gw, c, t: c.post("/token/revoke", data={"token": t})),
]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The token service's clock, shared by the in-process gateway."""
    return FakeClock().install(monkeypatch, tokens.service)


@pytest.mark.parametrize("way", EXPIRY_WAYS, ids=lambda w: w.name)
def test_expiry_holds(gw: Running, clock: FakeClock, way: Use) -> None:
    (gw.data / "u").mkdir()
    (gw.data / "u" / "f").write_bytes(b"data")
    tok = exchange(gw, "storage.read:/local/u storage.modify:/local/u", lifetime=60)
    with as_bearer(gw, tok) as c:
        assert c.get("/path/local/u/f?action=exists").status_code == 200  # verified, cached
        clock.advance(60 + gw.gateway.tokens.leeway + 1)
        before = snapshot(gw.data)
        r = way.send(gw, c, tok)
    if way.name == "revoke itself":
        # RFC 7009: revoking a token that is no longer valid is not an error; it did nothing.
        assert r.status_code in (200, 401), r.text
    else:
        assert r.status_code == 401, r.text
    assert snapshot(gw.data) == before
