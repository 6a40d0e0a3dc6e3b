"""``GET /token``: the caller's live tokens, over HTTP on a real server — only their own,
never the token itself, and nothing revoked (directly, through an ancestor, by
execution), used up or expired."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server import Running

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"
ACCESS_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def issue(gw: Running, subject: str, kind: str = API_KEY_TYPE, **extra: Any) -> str:
    data = {
        "grant_type": EXCHANGE,
        "subject_token": subject,
        "subject_token_type": kind,
        "scope": "storage.read:/local",
        **extra,
    }
    r = httpx.post(gw.api + "/token", data=data)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def live(gw: Running, key: str) -> list[dict[str, Any]]:
    r = httpx.get(gw.api + "/token", headers={"apikey": key})
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body: list[dict[str, Any]] = r.json()
    return body


def jti_of(gw: Running, key: str, execution: str) -> str:
    return next(t["jti"] for t in live(gw, key) if t.get("executionId") == execution)


def test_lists_own_live_tokens_only(gw: Running) -> None:
    _, bob_key = gw.gateway.users.add_user("bob")
    mine = issue(gw, gw.key, execution_id="exec-a", lifetime="600")
    issue(gw, bob_key, execution_id="exec-bob")
    listed = live(gw, gw.key)
    assert [t["executionId"] for t in listed] == ["exec-a"]
    entry = listed[0]
    assert entry["scope"] == "storage.read:/local"
    assert entry["expiresAt"] - entry["issuedAt"] == 600
    assert mine not in str(listed)  # ids and scopes, never the token
    assert [t["executionId"] for t in live(gw, bob_key)] == ["exec-bob"]


def test_needs_the_api_key(gw: Running) -> None:
    token = issue(gw, gw.key)
    assert httpx.get(gw.api + "/token").json()["errorCode"] == 40101
    as_token = httpx.get(gw.api + "/token", headers={"Authorization": f"Bearer {token}"})
    assert as_token.status_code == 401
    bad = httpx.get(gw.api + "/token", headers={"apikey": "fgk_nope"})
    assert bad.status_code == 401 and bad.json()["errorCode"] == 40101


def test_revoked_used_up_and_narrowed_tokens(gw: Running) -> None:
    parent = issue(gw, gw.key, execution_id="exec-p")
    child = issue(gw, parent, ACCESS_TYPE, scope="storage.read:/local/sub")
    listed = {t["jti"]: t for t in live(gw, gw.key)}
    assert len(listed) == 2
    parent_jti = next(j for j, t in listed.items() if "parent" not in t)
    child_entry = next(t for t in listed.values() if "parent" in t)
    assert child_entry["parent"] == parent_jti
    assert child_entry["executionId"] == "exec-p"  # inherited

    # Revoking the parent by id takes its narrowed child off the list too.
    r = httpx.post(gw.api + "/token/revoke", data={"jti": parent_jti}, headers={"apikey": gw.key})
    assert r.status_code == 200, r.text
    assert live(gw, gw.key) == []
    assert httpx.get(
        gw.api + "/path/local", params={"action": "list"},
        headers={"Authorization": f"Bearer {child}"},
    ).status_code == 401  # fmt: skip

    # By execution.
    issue(gw, gw.key, execution_id="exec-e")
    issue(gw, gw.key, execution_id="exec-keep")
    by_exec = {"execution_id": "exec-e"}
    httpx.post(gw.api + "/token/revoke", data=by_exec, headers={"apikey": gw.key})
    assert [t["executionId"] for t in live(gw, gw.key)] == ["exec-keep"]

    # A one-use token is listed until its use is spent.
    once = issue(gw, gw.key, execution_id="exec-once", uses="1")
    assert next(t for t in live(gw, gw.key) if t["executionId"] == "exec-once")["usesLeft"] == 1
    used = httpx.get(
        gw.api + "/path/local", params={"action": "exists"},
        headers={"Authorization": f"Bearer {once}"},
    )  # fmt: skip
    assert used.status_code == 200, used.text
    assert [t["executionId"] for t in live(gw, gw.key)] == ["exec-keep"]


def test_expired_tokens_are_not_listed(gw: Running) -> None:
    issue(gw, gw.key, execution_id="exec-live")
    expired = jti_of(gw, gw.key, "exec-live")
    # Age the row in the store (no sleeping): its expiry one second in the past.
    with gw.gateway.store.transaction() as tx:
        tx.execute("UPDATE issued_tokens SET exp = iat - 1 WHERE jti = ?", (expired,))
    assert live(gw, gw.key) == []
