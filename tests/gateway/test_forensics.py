"""Forensics over HTTP on a real gateway (uvicorn), on SQLite and on the real PostgreSQL:
a refused request's audit row found by the request id its answer carried, with the
reason and the client address; /explain by the token id the audit shows (owner, admin,
nobody else); one vocabulary of operations; GET /audit and `fedgate audit` filters;
audit retention driven by an injected clock."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway import config
from gateway.config import MountConfig
from tests import postgres
from tests.gateway.helpers import is_error
from tests.scale.procs import cli, serve, write_config
from tests.server import Running, local_settings, master_env, running
from tokens.audit import OPERATIONS, iso_time

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
FEDGATE = str(Path(sys.executable).parent / "fedgate")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
    else:
        yield from postgres.schema_url(request.getfixturevalue("pg_server"), "forensics_")


@pytest.fixture
def env() -> dict[str, str]:
    return master_env()


def _settings(tmp: Path, database_url: str, **overrides: Any) -> Any:
    (tmp / "data").mkdir(exist_ok=True)
    (tmp / "shared").mkdir(exist_ok=True)
    mounts = (
        MountConfig(name="local", type="posix", options={"root": str(tmp / "data")}),
        # Everyone reads, only admins write: a refusal by the mount's rule, not a scope.
        MountConfig(
            name="shared",
            type="posix",
            options={"root": str(tmp / "shared")},
            write_users=("admin",),
        ),
    )
    return local_settings(tmp, mounts=mounts, database_url=database_url, **overrides)


@pytest.fixture
def gw(tmp_path: Path, database_url: str, env: dict[str, str]) -> Iterator[Running]:
    with running(_settings(tmp_path, database_url), env=env) as r:
        (r.data / "a").mkdir()
        (r.data / "a" / "in.txt").write_text("input")
        (r.data / "b").mkdir()
        yield r


@pytest.fixture
def alice(gw: Running) -> str:
    return gw.gateway.users.add_user("alice")[1]


@pytest.fixture
def bob(gw: Running) -> str:
    return gw.gateway.users.add_user("bob")[1]


def exchange(gw: Running, key: str, scope: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": GRANT,
        "subject_token": key,
        "subject_token_type": API_KEY_TYPE,
        "scope": scope,
        **extra,
    }
    return httpx.post(gw.api + "/token", data=form)


def token(gw: Running, key: str, scope: str, **extra: str) -> str:
    return token_at(gw.api, key, scope, **extra)


def token_at(api: str, key: str, scope: str, **extra: str) -> str:
    form = {"grant_type": GRANT, "subject_token": key, "subject_token_type": API_KEY_TYPE}
    r = httpx.post(api + "/token", data={**form, "scope": scope, **extra})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def jti_of(tok: str) -> str:
    payload = tok.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def audit(gw: Running, key: str | None = None, **params: str) -> list[dict[str, Any]]:
    r = httpx.get(gw.api + "/audit", params=params, headers={"apikey": key or gw.key})
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


def explain(gw: Running, key: str, **body: Any) -> httpx.Response:
    return httpx.post(gw.api + "/explain", json=body, headers={"apikey": key})


# --- a 403 found by its request id ----------------------------------------------------


def test_scope_denial_found_by_request_id_with_reason_and_client(gw: Running, alice: str) -> None:
    tok = token(gw, alice, "storage.read:/local/a", execution_id="exec-forensics")
    r = httpx.get(gw.api + "/path/local/b?action=list", headers=bearer(tok))
    is_error(r, 403, 40301)
    rid = r.headers["x-request-id"]
    rows = audit(gw, request_id=rid)
    assert len(rows) == 1
    row = rows[0]
    assert row["result"] == "denied" and row["status"] == 403
    assert row["event"] == "access" and row["operation"] == "list"
    assert row["user"] == "alice" and row["token_id"] == jti_of(tok)
    assert row["execution_id"] == "exec-forensics"
    assert row["path"] == "/local/b" and row["mount"] == "local"
    # The reason names what refused: the activity, the path and the token's scopes.
    assert row["reason"] == (
        "no scope of the token allows read on /local/b (its scopes: storage.read:/local/a)"
    )
    assert row["client"] == "127.0.0.1"
    assert row["request_id"] == rid
    assert ISO.match(row["time"]), row["time"]
    assert tok not in json.dumps(rows)
    # The owner finds it too; another user does not (not even by its request id).
    assert [x["request_id"] for x in audit(gw, alice, request_id=rid)] == [rid]


def test_the_request_id_the_client_sent_is_the_one_recorded(gw: Running, alice: str) -> None:
    tok = token(gw, alice, "storage.read:/local/a")
    r = httpx.get(
        gw.api + "/path/local/a/in.txt?action=content",
        headers={**bearer(tok), "X-Request-ID": "job-42.step-3"},
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "job-42.step-3"
    (row,) = audit(gw, request_id="job-42.step-3")
    assert (row["operation"], row["result"], row["bytes"]) == ("content", "ok", 5)
    assert "reason" not in row


def test_client_address_honours_forwarded_headers_from_trusted_proxies_only(
    tmp_path: Path,
) -> None:
    # (The address does not depend on the database: SQLite only.)
    forged = {"X-Forwarded-For": "203.0.113.9"}
    for sub in ("untrusted", "proxied"):
        (tmp_path / sub).mkdir()
    with running(_settings(tmp_path / "untrusted", "")) as gw:
        r = httpx.get(gw.api + "/path/local?action=list", headers={"apikey": gw.key, **forged})
        (row,) = audit(gw, request_id=r.headers["x-request-id"])
        assert row["client"] == "127.0.0.1"  # any client can send the header: ignored
    settings = _settings(tmp_path / "proxied", "", trusted_proxies=("127.0.0.1",))
    with running(settings) as gw:
        r = httpx.get(gw.api + "/path/local?action=list", headers={"apikey": gw.key, **forged})
        (row,) = audit(gw, request_id=r.headers["x-request-id"])
        assert row["client"] == "203.0.113.9"  # what the trusted proxy saw


def test_fedgate_serve_records_request_ids_and_never_a_forged_address(
    tmp_path: Path, database_url: str
) -> None:
    """The production server (`fedgate serve`, two workers): every request's audit row
    carries its request id; X-Forwarded-For from a peer that is not a trusted proxy
    (here 127.0.0.1, which uvicorn itself would trust) does not change the address."""
    (tmp_path / "data").mkdir()
    config = write_config(
        tmp_path / "fedgate.toml",
        tmp_path / "state",
        {"local": {"type": "posix", "root": str(tmp_path / "data")}},
        database_url,
    )
    config.write_text(config.read_text().replace("[server]\n", "[server]\nworkers = 2\n", 1))
    env = master_env()
    alice = cli(config, env, "user", "add", "alice").strip()
    server = serve(config, env, tmp_path / "serve.log")
    try:
        tok = token_at(server.api, alice, "storage.read:/local/a")
        rids = [f"serve-{i}" for i in range(12)]
        for rid in rids:
            with httpx.Client(headers={"Connection": "close"}) as c:  # spread over workers
                r = c.get(
                    server.api + "/path/local/b?action=list",
                    headers={**bearer(tok), "X-Request-ID": rid, "X-Forwarded-For": "6.6.6.6"},
                )
            assert r.status_code == 403 and r.headers["x-request-id"] == rid
        for rid in rids:
            # Each worker writes its audit buffer every 0.5 s: the row may still sit in the
            # other worker's buffer when this query lands. Wait for it, not a fixed time.
            deadline = time.monotonic() + 30
            while True:
                r = httpx.get(
                    server.api + "/audit", params={"request_id": rid}, headers={"apikey": alice}
                )
                if r.json() or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            (row,) = r.json()
            assert row["client"] == "127.0.0.1" and row["result"] == "denied"
            assert row["reason"].startswith("no scope of the token allows read on /local/b")
    finally:
        assert server.stop() == 0


def test_mount_rule_denial_names_the_rule(gw: Running, alice: str) -> None:
    r = httpx.put(gw.api + "/path/shared/new.txt", content=b"x", headers={"apikey": alice})
    is_error(r, 403, 40303)
    (row,) = audit(gw, request_id=r.headers["x-request-id"])
    assert row["operation"] == "write" and row["result"] == "denied"
    assert row["reason"] == (
        "user 'alice' may not create on /shared: only read (not in its write_users)"
    )
    assert not (gw.data.parent / "shared" / "new.txt").exists()


def test_an_error_is_recorded_with_its_reason(gw: Running) -> None:
    # A direct (redirected) upload asked of a mount that cannot presign one.
    r = httpx.put(
        gw.api + "/path/local/a/new.bin?redirect=true", content=b"", headers={"apikey": gw.key}
    )
    is_error(r, 501, 50101)
    (row,) = audit(gw, request_id=r.headers["x-request-id"])
    assert (row["result"], row["status"], row["operation"]) == ("error:50101", 501, "write")
    assert row["reason"] == r.json()["errorMessage"]
    assert "no direct upload URL" in row["reason"]


def test_native_refusal_in_a_worker_thread_keeps_the_request_id(gw: Running, alice: str) -> None:
    # Replacing an existing file needs modify, checked in a worker thread after a stat.
    (gw.data / "out").mkdir()
    (gw.data / "out" / "x.txt").write_text("x")
    tok = token(gw, alice, "storage.create:/local/out")
    r = httpx.post(
        gw.api + "/token/native",
        json={"path": "/local/out/x.txt", "method": "PUT"},
        headers=bearer(tok),
    )
    is_error(r, 403, 40301)
    (row,) = audit(gw, request_id=r.headers["x-request-id"])
    assert (row["event"], row["operation"], row["result"]) == ("native", "write", "denied")
    assert row["reason"].startswith("no scope of the token allows modify on /local/out/x.txt")
    assert row["client"] == "127.0.0.1" and row["token_id"] == jti_of(tok)


def test_refused_exchange_names_the_scopes_beyond_the_user(gw: Running, alice: str) -> None:
    r = exchange(gw, alice, "storage.read:/local storage.modify:/shared/x")
    assert r.status_code == 403
    (row,) = audit(gw, request_id=r.headers["x-request-id"])
    assert row["event"] == "exchange" and row["result"] == "denied" and row["status"] == 403
    assert row["reason"] == (
        "storage.modify:/shared/x is more than user 'alice' may do on the mounts"
    )
    assert alice not in json.dumps(row)


# --- /explain by token id -------------------------------------------------------------


def test_explain_by_token_id_as_owner_and_admin(gw: Running, alice: str) -> None:
    tok = token(gw, alice, "storage.read:/local/a")
    r = httpx.get(gw.api + "/path/local/b?action=list", headers=bearer(tok))
    (row,) = audit(gw, request_id=r.headers["x-request-id"])
    for key in (alice, gw.key):  # the token's owner, then an admin
        out = explain(
            gw, key, token_id=row["token_id"], path=row["path"], operation=row["operation"]
        )
        assert out.status_code == 200, out.text
        body = out.json()
        assert body["allowed"] is False
        assert body["reason"] == row["reason"]  # the same words as the audit
        assert body["user"] == "alice"
        assert (body["operation"], body["activity"]) == ("list", "read")
        assert body["token"]["id"] == row["token_id"]
        assert body["token"]["state"] == "valid"
        assert body["token"]["scope"] == "storage.read:/local/a"
        assert ISO.match(body["token"]["expiresAt"])
        assert tok not in out.text
    ok = explain(gw, alice, token_id=row["token_id"], path="/local/a/in.txt", operation="content")
    assert ok.json()["allowed"] is True and ok.json()["matchedScope"] == "storage.read:/local/a"


def test_explain_by_token_id_refuses_anyone_else_like_an_unknown_id(
    gw: Running, alice: str, bob: str
) -> None:
    jti = jti_of(token(gw, alice, "storage.read:/local/a"))
    theirs = explain(gw, bob, token_id=jti, path="/local/a", operation="list")
    unknown = explain(gw, bob, token_id="no-such-token-id", path="/local/a", operation="list")
    is_error(theirs, 404, 40403)
    is_error(unknown, 404, 40403)
    assert theirs.json() == unknown.json()  # nothing tells that the token exists
    assert "alice" not in theirs.text
    # bob's own token is explained to him
    mine = jti_of(token(gw, bob, "storage.read:/local"))
    assert explain(gw, bob, token_id=mine, path="/local/a", operation="list").json()["allowed"]
    # without an API key: 401, as before
    r = httpx.post(gw.api + "/explain", json={"token_id": jti, "path": "/local/a"})
    assert r.status_code == 401


def test_explain_by_token_id_of_a_revoked_token(gw: Running, alice: str) -> None:
    tok = token(gw, alice, "storage.read:/local/a")
    jti = jti_of(tok)
    r = httpx.post(gw.api + "/token/revoke", data={"jti": jti}, headers={"apikey": alice})
    assert r.status_code == 200 and r.json()["revoked"] == 1
    body = explain(gw, alice, token_id=jti, path="/local/a/in.txt", operation="content").json()
    assert body["allowed"] is False and body["token"]["state"] == "revoked"
    assert body["reason"].startswith("the token is revoked; its scopes would allow this")


def test_explain_by_token_id_after_its_api_key_is_revoked(gw: Running, alice: str) -> None:
    jti = jti_of(token(gw, alice, "storage.read:/local/a"))
    r = httpx.post(
        gw.api + "/token/revoke",
        data={"token": alice, "token_type_hint": "api_key"},
        headers={"apikey": gw.key},
    )
    assert r.status_code == 200, r.text
    body = explain(gw, gw.key, token_id=jti, path="/local/a/in.txt", operation="content").json()
    assert body["allowed"] is False and body["token"]["state"] == "revoked"
    (row,) = audit(gw, request_id=r.headers["x-request-id"])  # the revocation, by request
    assert row["user"] == "admin" and alice not in json.dumps(row)


def test_explain_by_token_id_after_the_token_record_is_gone(gw: Running, alice: str) -> None:
    """Tokens' own rows are purged soon after they expire; the audit's exchange row
    still explains an old refusal."""
    tok = token(gw, alice, "storage.read:/local/a", execution_id="exec-old")
    jti = jti_of(tok)
    with gw.gateway.store.transaction() as tx:  # what the purge of expired tokens does
        assert tx.execute("DELETE FROM issued_tokens WHERE jti = ?", (jti,)) == 1
    body = explain(gw, alice, token_id=jti, path="/local/b", operation="list").json()
    assert body["allowed"] is False
    assert body["token"]["state"] == "expired" and "expiresAt" not in body["token"]
    assert body["token"]["scope"] == "storage.read:/local/a"
    assert body["token"]["executionId"] == "exec-old"
    assert body["reason"].startswith("the token is expired; its scopes would not allow this")
    assert "no scope of the token allows read on /local/b" in body["reason"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"token_id": 12, "path": "/local/a"}, "token_id"),
        ({"token_id": "", "path": "/local/a"}, "token_id"),
        ({"token_id": "x" * 201, "path": "/local/a"}, "token_id"),
        ({"token_id": "abc", "token": "abc", "path": "/local/a"}, "not both"),
        ({"path": "/local/a", "operation": "fly"}, "operation must be one of"),
        ({"path": "/local/a", "operation": ["read"]}, "operation must be one of"),
    ],
)
def test_explain_refuses_bad_input(gw: Running, body: dict[str, Any], fragment: str) -> None:
    r = explain(gw, gw.key, **body)
    is_error(r, 400, 40004)
    assert fragment in r.json()["errorMessage"]


# --- one vocabulary -------------------------------------------------------------------


def test_every_operation_the_audit_records_is_one_explain_takes(gw: Running) -> None:
    h = {"apikey": gw.key}
    api = gw.api
    for action in ("exists", "properties", "list", "md5", "content"):
        path = "a/in.txt" if action in ("md5", "content") else "a"
        assert httpx.get(f"{api}/path/local/{path}?action={action}", headers=h).is_success
    assert httpx.put(f"{api}/path/local/newdir/", headers=h).status_code == 201
    assert httpx.put(f"{api}/path/local/newdir/f.txt", content=b"1", headers=h).is_success
    assert httpx.delete(f"{api}/path/local/newdir/f.txt", headers=h).status_code == 204
    resolve = httpx.get(f"{api}/resolve", params={"uri": f"{api}/path/local/a"}, headers=h)
    assert resolve.status_code == 200, resolve.text
    (gw.data / "a" / "m.txt").write_text("m")
    dav = f"{gw.url}/webdav/local/a"
    moved = httpx.request("MOVE", f"{dav}/m.txt", headers={**h, "Destination": f"{dav}/n.txt"})
    assert moved.status_code == 201, moved.text
    rows = audit(gw, event="access", limit="100")
    seen = {r["operation"] for r in rows}
    want = {"exists", "properties", "list", "md5", "content", "mkdir", "write", "delete"}
    assert want | {"resolve", "move"} <= seen
    assert seen <= set(OPERATIONS)
    for operation in sorted(seen):
        body = explain(gw, gw.key, path="/local/a", operation=operation).json()
        assert (body["operation"], body["activity"]) == (operation, OPERATIONS[operation])


def test_write_explains_what_replacing_needs(gw: Running, alice: str) -> None:
    tok = token(gw, alice, "storage.create:/local/out")
    body = explain(gw, alice, token=tok, path="/local/out/r.txt", operation="write").json()
    assert body["allowed"] is True and body["activity"] == "create"
    replace = body["whenTargetExists"]
    assert replace["activity"] == "modify" and replace["allowed"] is False
    assert "no scope of the token allows modify" in replace["reason"]


# --- GET /audit filters ---------------------------------------------------------------


def test_audit_time_and_mount_filters(gw: Running) -> None:
    h = {"apikey": gw.key}
    before = time.time()
    httpx.get(gw.api + "/path/local/a?action=list", headers=h)
    httpx.get(gw.api + "/path/shared?action=list", headers=h)
    rows = audit(gw, since=iso_time(before - 1))
    assert {r["mount"] for r in rows} >= {"local", "shared"}
    assert [r["mount"] for r in audit(gw, since=iso_time(before - 1), mount="shared")] == ["shared"]
    assert audit(gw, until=iso_time(before - 3600)) == []
    assert audit(gw, since=iso_time(time.time() + 3600)) == []
    epoch = audit(gw, since=str(before - 1), mount="shared")  # epoch seconds still work
    assert len(epoch) == 1
    assert len(audit(gw, limit="1")) == 1
    assert [r["result"] for r in audit(gw, result="ok", mount="shared")] == ["ok"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-02-30T00:00:00Z"}, "until"),
        ({"since": "nan"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "10001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"mount": ""}, "mount"),
        ({"request_id": "r" * 257}, "request_id"),
    ],
)
def test_audit_refuses_bad_filters(gw: Running, params: dict[str, str], fragment: str) -> None:
    r = httpx.get(gw.api + "/audit", params=params, headers={"apikey": gw.key})
    is_error(r, 400, 40001)
    assert fragment in r.json()["errorMessage"]


def test_users_see_only_their_own_rows(gw: Running, alice: str) -> None:
    r = httpx.get(gw.api + "/path/local/a?action=list", headers={"apikey": gw.key})
    rid = r.headers["x-request-id"]
    assert len(audit(gw, request_id=rid)) == 1
    assert audit(gw, alice, request_id=rid) == []
    denied = httpx.get(gw.api + "/audit", params={"user": "admin"}, headers={"apikey": alice})
    is_error(denied, 403, 40303)


# --- the CLI --------------------------------------------------------------------------


def test_cli_audit_by_request_id_and_times(
    gw: Running, alice: str, env: dict[str, str], database_url: str
) -> None:
    tok = token(gw, alice, "storage.read:/local/a")
    r = httpx.get(gw.api + "/path/local/b?action=list", headers=bearer(tok))
    rid = r.headers["x-request-id"]
    gw.gateway.audit.flush()
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("FEDGATE_")}
    cli_env.update(env)
    cli_env["FEDGATE_STATE_DIR"] = gw.settings.state_dir
    if database_url:
        cli_env["FEDGATE_DATABASE_URL"] = database_url

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FEDGATE, "audit", *args],
            env=cli_env,
            cwd=gw.data.parent,
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = cli("--request-id", rid, "--since", iso_time(time.time() - 600))
    assert out.returncode == 0, out.stderr
    (row,) = [json.loads(line) for line in out.stdout.splitlines()]
    assert row["request_id"] == rid and row["result"] == "denied"
    assert row["reason"].startswith("no scope of the token allows read on /local/b")
    assert row["client"] == "127.0.0.1" and ISO.match(row["time"])
    assert cli("--request-id", rid, "--until", iso_time(time.time() - 600)).stdout == ""
    by_mount = cli("--mount", "local", "--result", "denied", "--user", "alice")
    assert [json.loads(x)["request_id"] for x in by_mount.stdout.splitlines()] == [rid]
    bad = cli("--since", "last tuesday")
    assert bad.returncode == 2 and "--since" in bad.stderr and "ISO 8601" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert cli("--limit", "0").returncode == 2
    assert tok not in out.stdout + out.stderr


# --- retention ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _wait_purge(gw: Running, clock: Clock) -> None:
    """Until the writer thread has purged at the clock's current time (an event, not a
    delay: the thread records when its last purge finished)."""
    deadline = time.monotonic() + 30
    while gw.gateway.audit.purged_at != clock.now:
        assert time.monotonic() < deadline, "the audit writer did not purge"
        time.sleep(0.02)


def test_retention_purges_old_rows(tmp_path: Path, database_url: str) -> None:
    settings = _settings(tmp_path, database_url, audit_retention_days=1)
    with running(settings) as gw:
        clock = Clock()
        gw.gateway.audit.clock = clock  # before the first row starts the writer thread
        h = {"apikey": gw.key}
        first = httpx.get(gw.api + "/path/local?action=list", headers=h).headers["x-request-id"]
        _wait_purge(gw, clock)  # the first tick purges (nothing is old yet)
        assert len(audit(gw, request_id=first)) == 1
        clock.now += 0.5 * 86_400  # half a day later: kept
        _wait_purge(gw, clock)
        assert len(audit(gw, request_id=first)) == 1
        clock.now += 0.6 * 86_400  # 1.1 days after the row: purged
        _wait_purge(gw, clock)
        assert audit(gw, request_id=first) == []
        second = httpx.get(gw.api + "/path/local?action=list", headers=h).headers["x-request-id"]
        assert len(audit(gw, request_id=second)) == 1  # new rows are still written


def test_retention_setting_is_checked(tmp_path: Path) -> None:
    toml = tmp_path / "fedgate.toml"
    toml.write_text("[server]\naudit_retention_days = 30\n")
    assert config.load(str(toml), env={}).audit_retention_days == 30
    toml.write_text("")
    assert config.load(str(toml), env={}).audit_retention_days == 0  # default: forever
    env = {"FEDGATE_AUDIT_RETENTION_DAYS": "7"}
    assert config.load(str(toml), env=env).audit_retention_days == 7
    for bad in ("-1", "seven", "1.5"):
        with pytest.raises(config.ConfigError, match=r"(?i)audit_retention_days"):
            config.load(str(toml), env={"FEDGATE_AUDIT_RETENTION_DAYS": bad})
    toml.write_text("[server]\naudit_retention_days = -3\n")
    with pytest.raises(config.ConfigError, match=r"audit_retention_days: expected 0 \(keep"):
        config.load(str(toml), env={})
