"""Two-step delegation over HTTP: external keys, token exchange, enforcement, revocation,
explain and audit — against a real uvicorn and the SQLite store."""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import (
    ACCESS,
    API_KEY_TYPE,
    bearer,
    exchange,
    is_error,
    raw_request,
    token,
)
from tests.server import Running


@pytest.fixture
def tree(gw: Running) -> Path:
    (gw.data / "a" / "x").mkdir(parents=True)
    (gw.data / "a" / "in.txt").write_text("input")
    (gw.data / "ab").mkdir()
    (gw.data / "ab" / "other.txt").write_text("other")
    (gw.data / "b").mkdir()
    return gw.data


def test_exchange_answer_shape(gw: Running) -> None:
    r = exchange(gw, "storage.read:/local/a", execution_id="exec-1", lifetime=300)
    assert r.status_code == 200
    body = r.json()
    assert body["issued_token_type"] == ACCESS
    assert body["token_type"] == "Bearer"
    assert 290 <= body["expires_in"] <= 300
    assert r.headers["cache-control"] == "no-store"
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["kid"] and header["alg"] not in ("none", "HS256")
    jwks = httpx.get(gw.url + "/.well-known/jwks.json").json()
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert all("d" not in k for k in jwks["keys"])  # public halves only


def test_default_lifetime_is_20_minutes(gw: Running) -> None:
    body = exchange(gw, "storage.read:/local").json()
    assert 1190 <= body["expires_in"] <= 1200


def test_read_token_reads_but_cannot_write(gw: Running, tree: Path) -> None:
    tok = token(gw, "storage.read:/local/a")
    with httpx.Client(base_url=gw.api, headers=bearer(tok)) as c:
        assert c.get("/path/local/a/in.txt?action=content").content == b"input"
        assert c.get("/path/local/a?action=list").status_code == 200
        assert c.get("/path/local/a/in.txt?action=md5").status_code == 200
        assert c.get("/path/local/a/in.txt?action=exists").json() == {"exists": True}
        is_error(
            c.put(
                "/path/local/a/new",
                content=b"x",
                headers={"Content-Type": "application/octet-stream"},
            ),
            403,
            40301,
        )
        is_error(c.delete("/path/local/a/in.txt"), 403, 40301)
        is_error(c.get("/path/local/ab/other.txt?action=content"), 403, 40301)  # /a ≠ /ab
        is_error(c.get("/path/local/b?action=list"), 403, 40301)
    assert not (tree / "a" / "new").exists()
    assert (tree / "a" / "in.txt").exists()


def test_dot_dot_cannot_climb_out_of_scope(gw: Running, tree: Path) -> None:
    tok = token(gw, "storage.read:/local/a")
    request = (
        f"GET /rest/path/local/a/../ab/other.txt?action=content HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {tok}\r\nConnection: close\r\n\r\n"
    ).encode()
    answer = raw_request(gw, request)
    assert answer.split(b"\r\n", 1)[0].split()[1] in (b"400", b"403")
    assert b"other" not in answer.split(b"\r\n\r\n", 1)[1]


def test_create_scope_writes_new_but_never_overwrites_or_deletes(gw: Running, tree: Path) -> None:
    tok = token(gw, "storage.create:/local/b")
    octet = {"Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=gw.api, headers=bearer(tok)) as c:
        assert c.put("/path/local/b/result.txt", content=b"r1", headers=octet).status_code == 201
        assert c.put("/path/local/b/outdir").status_code == 201
        is_error(c.put("/path/local/b/result.txt", content=b"r2", headers=octet), 403, 40301)
        is_error(c.delete("/path/local/b/result.txt"), 403, 40301)
        is_error(c.get("/path/local/b/result.txt?action=content"), 403, 40301)
    assert (tree / "b" / "result.txt").read_bytes() == b"r1"
    mod = token(gw, "storage.modify:/local/b")
    with httpx.Client(base_url=gw.api, headers=bearer(mod)) as c:
        assert c.put("/path/local/b/result.txt", content=b"r2", headers=octet).status_code == 201
        assert c.delete("/path/local/b/result.txt").status_code == 204


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"),  # forged signature
        lambda t: "e30." + t.split(".", 1)[1],  # header replaced by {}
        lambda t: (
            base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
            + "."
            + t.split(".")[1]
            + "."
        ),
        lambda t: "not-a-jwt",
    ],
)
def test_forged_tokens_are_refused(gw: Running, tree: Path, mangle) -> None:  # type: ignore[no-untyped-def]
    bad = mangle(token(gw, "storage.read:/local"))
    r = httpx.get(gw.api + "/path/local/a/in.txt?action=content", headers=bearer(bad))
    is_error(r, 401, 40102)


def test_expired_token_is_refused(gw: Running, tree: Path) -> None:
    svc = gw.gateway.tokens
    from tokens.scopes import parse_scopes

    issued = svc.issue("admin", parse_scopes("storage.read:/local"), lifetime=1)
    # Forge the clock rather than sleeping past the 60 s leeway.
    svc_leeway = svc.leeway
    try:
        svc.leeway = 0
        time.sleep(2.1)
        r = httpx.get(
            gw.api + "/path/local/a/in.txt?action=content", headers=bearer(issued.access_token)
        )
        is_error(r, 401, 40102)
        assert "expired" in r.json()["errorMessage"]
    finally:
        svc.leeway = svc_leeway


def test_revocation_by_token_jti_and_execution(gw: Running, tree: Path) -> None:
    url = gw.api + "/path/local/a/in.txt?action=exists"
    t1 = token(gw, "storage.read:/local")
    assert httpx.post(gw.api + "/token/revoke", data={"token": t1}).status_code == 200
    is_error(httpx.get(url, headers=bearer(t1)), 401, 40102)

    t2 = token(gw, "storage.read:/local", execution_id="exec-42")
    t3 = token(gw, "storage.read:/local", execution_id="exec-42")
    r = httpx.post(
        gw.api + "/token/revoke", data={"execution_id": "exec-42"}, headers={"apikey": gw.key}
    )
    assert r.json()["revoked"] == 2
    is_error(httpx.get(url, headers=bearer(t2)), 401, 40102)
    is_error(httpx.get(url, headers=bearer(t3)), 401, 40102)

    # anonymous revocation by id is not allowed: only the token itself, or its owner
    t4 = token(gw, "storage.read:/local")
    jti = gw.gateway.tokens.verify(t4).jti
    is_error(httpx.post(gw.api + "/token/revoke", data={"jti": jti}), 401, 40101)
    assert httpx.get(url, headers=bearer(t4)).status_code == 200
    httpx.post(gw.api + "/token/revoke", data={"jti": jti}, headers={"apikey": gw.key})
    is_error(httpx.get(url, headers=bearer(t4)), 401, 40102)


def test_narrowing_never_widens(gw: Running, tree: Path) -> None:
    parent = token(gw, "storage.read:/local/a", lifetime=600)
    r = exchange(gw, "storage.read:/local/a/x", subject=parent, subject_type=ACCESS)
    assert r.status_code == 200 and r.json()["expires_in"] <= 600
    for wider in ("storage.read:/local", "storage.modify:/local/a", "storage.read:/local/ab"):
        r = exchange(gw, wider, subject=parent, subject_type=ACCESS)
        is_error(r, 403)
    r = exchange(gw, "storage.read:/local/a", subject=parent, subject_type=ACCESS, lifetime=5000)
    assert r.status_code in (400, 403) or r.json()["expires_in"] <= 600
    child = token(gw, "storage.read:/local/a/x", subject=parent, subject_type=ACCESS)
    httpx.post(gw.api + "/token/revoke", data={"token": parent})
    is_error(httpx.get(gw.api + "/path/local/a/x?action=exists", headers=bearer(child)), 401, 40102)


def test_bad_exchange_requests(gw: Running) -> None:
    r = httpx.post(gw.api + "/token", data={"grant_type": "password"})
    is_error(r, 400)
    r = exchange(gw, "storage.read:/local", subject_type="urn:weird")
    is_error(r, 400)
    assert API_KEY_TYPE in json.dumps(r.json())
    is_error(exchange(gw, "storage.read:/nomount"), 400)
    is_error(exchange(gw, "storage.fly:/local"), 400)
    is_error(exchange(gw, "storage.read:/local/../x"), 400)
    is_error(exchange(gw, "storage.read:/local", subject="fgk_bad_key"), 401, 40101)
    is_error(exchange(gw, "storage.read:/local", lifetime=10**7), 400)
    is_error(exchange(gw, ""), 400)
    r = httpx.post(
        gw.api + "/token", content=b"{bad json", headers={"Content-Type": "application/json"}
    )
    is_error(r, 400)


def test_user_cannot_delegate_more_than_they_may(tmp_path: Path) -> None:
    from gateway.config import MountConfig
    from tests.server import local_settings, running

    data = tmp_path / "data"
    data.mkdir()
    mounts = (
        MountConfig(
            "local", "posix", {"root": str(data)}, read_users=("*",), write_users=("admin",)
        ),
    )
    with running(local_settings(tmp_path, mounts=mounts)) as gw:
        _, carol_key = gw.gateway.users.add_user("carol")
        assert exchange(gw, "storage.read:/local", subject=carol_key).status_code == 200
        is_error(exchange(gw, "storage.modify:/local", subject=carol_key), 403)
        is_error(exchange(gw, "storage.create:/local/x", subject=carol_key), 403)
        octet = {"Content-Type": "application/octet-stream"}
        is_error(
            httpx.put(
                gw.api + "/path/local/f", content=b"x", headers={"apikey": carol_key, **octet}
            ),
            403,
            40303,
        )


def test_use_count(gw: Running, tree: Path) -> None:
    tok = token(gw, "storage.read:/local", uses=2)
    url = gw.api + "/path/local/a/in.txt?action=exists"
    assert httpx.get(url, headers=bearer(tok)).status_code == 200
    assert httpx.get(url, headers=bearer(tok)).status_code == 200
    is_error(httpx.get(url, headers=bearer(tok)), 401, 40102)


def test_external_keys_never_return_secrets(gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "GIRDER-SECRET-0123456789abcdef"
    h = {"apikey": gw.key}
    r = httpx.put(
        gw.api + "/user/externalKeys",
        json={"storageIdentifier": "local", "apiKey": secret},
        headers=h,
    )
    assert r.status_code == 200 and secret not in r.text
    listing = httpx.get(gw.api + "/user/externalKeys", headers=h)
    assert listing.json()[0]["storageIdentifier"] == "local" and secret not in listing.text
    audit = httpx.get(gw.api + "/audit", headers=h)
    assert secret not in audit.text
    platforms = httpx.get(gw.api + "/externalPlatforms", headers=h).json()
    assert platforms[0]["identifier"] == "local"
    is_error(
        httpx.put(
            gw.api + "/user/externalKeys",
            json={"storageIdentifier": "nope", "apiKey": "k"},
            headers=h,
        ),
        404,
        40402,
    )
    is_error(httpx.put(gw.api + "/user/externalKeys", json={"apiKey": "k"}, headers=h), 400)
    # deleting the key revokes the tokens that relied on it
    tok = token(gw, "storage.read:/local")
    assert httpx.delete(gw.api + "/user/externalKeys/local", headers=h).status_code == 204
    is_error(httpx.get(gw.api + "/path/local?action=exists", headers=bearer(tok)), 401, 40102)
    is_error(httpx.delete(gw.api + "/user/externalKeys/local", headers=h), 404)
    gw.gateway.audit.flush()
    db = Path(gw.settings.state_dir) / "state.db"
    for f in db.parent.glob("state.db*"):
        assert secret.encode() not in f.read_bytes()
    assert secret not in caplog.text


def test_explain(gw: Running, tree: Path) -> None:
    tok = token(gw, "storage.read:/local/a")
    h = {"apikey": gw.key}
    yes = httpx.post(
        gw.api + "/explain",
        json={"token": tok, "path": "/local/a/in.txt", "operation": "read"},
        headers=h,
    ).json()
    assert yes["allowed"] is True and yes["matchedScope"] == "storage.read:/local/a"
    assert yes["credential"]["source"] in ("service", "none", "vault")
    no = httpx.post(
        gw.api + "/explain",
        json={"token": tok, "path": "/local/ab", "operation": "read"},
        headers=h,
    ).json()
    assert no["allowed"] is False and "no scope" in no["reason"]
    no = httpx.post(
        gw.api + "/explain",
        json={"token": tok, "path": "/local/a/in.txt", "operation": "modify"},
        headers=h,
    ).json()
    assert no["allowed"] is False


def test_audit_records_exchange_and_access(gw: Running, tree: Path) -> None:
    tok = token(gw, "storage.read:/local/a", execution_id="exec-audit")
    httpx.get(gw.api + "/path/local/a/in.txt?action=content", headers=bearer(tok))
    httpx.get(gw.api + "/path/local/b?action=list", headers=bearer(tok))
    gw.gateway.audit.flush()
    events = httpx.get(
        gw.api + "/audit", params={"execution_id": "exec-audit"}, headers={"apikey": gw.key}
    ).json()
    kinds = [(e["event"], e.get("operation"), e["result"]) for e in events]
    assert ("access", "content", "ok") in kinds
    assert ("access", "list", "denied") in kinds
    content = next(e for e in events if e.get("operation") == "content")
    assert content["bytes"] == 5 and content["path"] == "/local/a/in.txt"
    assert tok not in json.dumps(events)
