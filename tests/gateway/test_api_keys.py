"""The life cycle of gateway API keys over HTTP: listed (id, created, last used; never a
secret), one key revoked with RFC 7009 (by itself, another key of its user, or an
admin; never by another user) or by id, and the tokens exchanged from it dying with it
while the user's other keys and their tokens keep working. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.gateway.helpers import gateway_at, is_error, run_cli
from tests.gateway.token_helpers import bearer, exchange, gw_db, narrow, send, status, token
from tests.server import Running
from tokens.errors import TokenError
from tokens.scopes import parse_scopes

__all__ = ["gw_db"]

BODY_KINDS = [pytest.param(True, id="json"), pytest.param(False, id="form")]


def key_id(key: str) -> str:
    return key.split("_")[1]


def secret(key: str) -> str:
    return key.split("_", 2)[2]


def listing(gw: Running, key: str, **params: str) -> httpx.Response:
    return httpx.get(gw.api + "/user/apiKeys", headers={"apikey": key}, params=params)


def test_keys_are_listed_without_their_secrets(gw_db: Running) -> None:
    gw = gw_db
    _, k1 = gw.gateway.users.add_user("alice")
    k2 = gw.gateway.users.new_api_key("alice", label="laptop")
    assert status(gw, {"apikey": k1}) == 200  # k1 used, k2 never
    r = listing(gw, k1)
    assert r.status_code == 200 and r.headers["cache-control"].startswith("no-store")
    keys = r.json()
    assert [k["id"] for k in keys] == [key_id(k1), key_id(k2)]
    first, second = keys
    assert first["label"] == "initial" and second["label"] == "laptop"
    assert first["current"] is True and second["current"] is False
    assert isinstance(first["created"], int) and isinstance(first["lastUsed"], int)
    assert second["lastUsed"] is None and second["expires"] is None
    for k in (k1, k2):
        assert secret(k) not in r.text
    # Someone else's keys: an admin only.
    _, bob = gw.gateway.users.add_user("bob")
    is_error(listing(gw, bob, user="alice"), 403, 40303)
    assert [k["id"] for k in listing(gw, gw.key, user="alice").json()] == [
        key_id(k1),
        key_id(k2),
    ]
    is_error(listing(gw, gw.key, user="nobody"), 404)
    # Keys are managed with a key, not with a delegated token.
    is_error(httpx.get(gw.api + "/user/apiKeys", headers=bearer(token(gw, k1))), 401, 40101)


@pytest.mark.parametrize("as_json", BODY_KINDS)
def test_one_key_revoked_with_rfc7009_takes_its_tokens_and_nothing_else(
    gw_db: Running, as_json: bool
) -> None:
    gw = gw_db
    _, k1 = gw.gateway.users.add_user("alice")
    k2 = gw.gateway.users.new_api_key("alice", label="second")
    t1 = token(gw, k1)
    t1_child = narrow(gw, t1, "storage.read:/local")
    t2 = token(gw, k2)
    body = {"token": k1, "token_type_hint": "api_key"}
    r = send(gw.api + "/token/revoke", body, as_json, headers={"apikey": k2})  # another key
    assert r.status_code == 200, r.text
    assert r.json() == {"revoked": 2, "apiKey": key_id(k1)}
    assert secret(k1) not in r.text
    assert status(gw, {"apikey": k1}) == 401
    assert status(gw, bearer(t1)) == 401
    assert status(gw, bearer(t1_child)) == 401
    assert status(gw, {"apikey": k2}) == 200
    assert status(gw, bearer(t2)) == 200
    assert [k["id"] for k in listing(gw, k2).json()] == [key_id(k2)]
    # Revoked means gone: it exchanges nothing, and revoking it again does nothing.
    is_error(exchange(gw, k1, "storage.read:/local"), 401, 40101)
    r = send(gw.api + "/token/revoke", body, as_json, headers={"apikey": k2})
    assert r.json() == {"revoked": 0}


@pytest.mark.parametrize("as_json", BODY_KINDS)
def test_who_may_revoke_a_key(gw_db: Running, as_json: bool) -> None:
    gw = gw_db
    _, alice = gw.gateway.users.add_user("alice")
    _, bob = gw.gateway.users.add_user("bob")
    spare = gw.gateway.users.new_api_key("alice")
    url = gw.api + "/token/revoke"
    # Another user, even holding the key: refused, and the key keeps working.
    r = send(url, {"token": alice, "token_type_hint": "api_key"}, as_json, headers={"apikey": bob})
    is_error(r, 403, 40303)
    assert status(gw, {"apikey": alice}) == 200
    # The key itself (its own header), without a hint.
    r = send(url, {"token": alice}, as_json, headers={"apikey": alice})
    assert r.status_code == 200 and r.json()["apiKey"] == key_id(alice)
    assert status(gw, {"apikey": alice}) == 401
    # Its holder, with no credential at all (RFC 7009).
    r = send(url, {"token": bob, "token_type_hint": "api_key"}, as_json)
    assert r.status_code == 200 and r.json()["apiKey"] == key_id(bob)
    assert status(gw, {"apikey": bob}) == 401
    # An admin.
    r = send(
        url, {"token": spare, "token_type_hint": "api_key"}, as_json, headers={"apikey": gw.key}
    )
    assert r.status_code == 200 and r.json()["apiKey"] == key_id(spare)
    assert status(gw, {"apikey": spare}) == 401
    # A wrong secret with a real id revokes nothing (and is no error).
    forged = f"fgk_{key_id(gw.key)}_{'A' * 43}"
    r = send(url, {"token": forged, "token_type_hint": "api_key"}, as_json)
    assert r.json() == {"revoked": 0}
    assert status(gw, {"apikey": gw.key}) == 200


def test_revoke_a_key_by_id(gw_db: Running) -> None:
    """The user lost the key (so cannot present it) but has another one."""
    gw = gw_db
    _, lost = gw.gateway.users.add_user("alice")
    kept = gw.gateway.users.new_api_key("alice")
    _, bob = gw.gateway.users.add_user("bob")
    t = token(gw, lost)
    url = f"{gw.api}/user/apiKeys/{key_id(lost)}"
    is_error(httpx.delete(url, headers={"apikey": bob}), 404)  # not bob's: not found
    is_error(httpx.delete(url, headers=bearer(t)), 401, 40101)  # not with a token
    assert status(gw, {"apikey": lost}) == 200 and status(gw, bearer(t)) == 200
    r = httpx.delete(url, headers={"apikey": kept})
    assert r.status_code == 200 and r.json() == {"apiKey": key_id(lost), "revoked": 1}
    assert status(gw, {"apikey": lost}) == 401 and status(gw, bearer(t)) == 401
    assert status(gw, {"apikey": kept}) == 200
    is_error(httpx.delete(url, headers={"apikey": kept}), 404)
    r = httpx.delete(f"{gw.api}/user/apiKeys/{key_id(bob)}", headers={"apikey": gw.key})
    assert r.status_code == 200  # an admin: anyone's
    assert status(gw, {"apikey": bob}) == 401


def test_the_operator_lists_and_revokes_keys_from_the_cli(tmp_path: Path) -> None:
    """The embedded default (SQLite under state_dir), as an operator types it."""
    k1 = run_cli(tmp_path, "user", "add", "alice").stdout.strip()
    made = run_cli(tmp_path, "user", "key", "alice", "--label", "laptop")
    assert made.returncode == 0, made.stderr
    k2 = made.stdout.strip()
    listed = run_cli(tmp_path, "user", "keys", "alice")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "CREATED"]
    assert [line.split()[0] for line in lines[1:]] == [key_id(k1), key_id(k2)]
    assert lines[2].split()[-1] == "laptop" and "never" in lines[2]
    assert secret(k1) not in listed.stdout + listed.stderr
    assert secret(k2) not in listed.stdout + listed.stderr
    gw = gateway_at(tmp_path)
    try:
        tok = gw.tokens.issue("alice", parse_scopes("storage.read:/local"), key_id=key_id(k1))
    finally:
        gw.close()
    for args in (("bob", "--revoke", key_id(k1)), ("alice", "--revoke", "0" * 16)):
        refused = run_cli(tmp_path, "user", "key", *args)
        assert refused.returncode == 1 and "has no API key" in refused.stderr
    assert run_cli(tmp_path, "user", "keys", "nobody").returncode == 1
    assert run_cli(tmp_path, "user", "key", "nobody").returncode == 1
    revoked = run_cli(tmp_path, "user", "key", "alice", "--revoke", key_id(k1))
    assert revoked.returncode == 0, revoked.stderr
    assert "1 live tokens revoked" in revoked.stderr
    gw = gateway_at(tmp_path)
    try:
        assert gw.users.authenticate_key(k1) is None
        assert gw.users.authenticate_key(k2) is not None
        with pytest.raises(TokenError):
            gw.tokens.verify(tok.access_token)
    finally:
        gw.close()
    assert key_id(k1) not in run_cli(tmp_path, "user", "keys", "alice").stdout
