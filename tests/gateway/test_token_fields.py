"""Every field of the delegation endpoints, sent with the wrong type or out of range, as
JSON and as a form: a 400 with a CARMIN error body, never a 500 or a false 503 (a value
that reached the database used to be reported as "state database unavailable"), and
nothing changed behind it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.gateway.helpers import is_error
from tests.gateway.token_helpers import API_KEY_TYPE, GRANT, bearer, gw_db, jti_of, token
from tests.server import Running

__all__ = ["gw_db"]

# Wrong in JSON only (a form has strings, and "5" may be a fine value).
WRONG_TYPES: list[Any] = [["x"], {"a": 1}, 5, 1.5, True]
HUGE = 10**23
INTEGERS = ("lifetime", "expires_in", "uses")


def post(gw: Running, path: str, body: Any, **headers: str) -> httpx.Response:
    return httpx.post(gw.api + path, json=body, headers=headers, timeout=30)


def form(gw: Running, path: str, body: dict[str, str], **headers: str) -> httpx.Response:
    return httpx.post(gw.api + path, data=body, headers=headers, timeout=30)


def refused(r: httpx.Response) -> None:
    """A clean 400 with a CARMIN body (is_error checks the shape)."""
    is_error(r, 400)


def exchange_body(gw: Running, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "grant_type": GRANT,
        "subject_token": gw.key,
        "subject_token_type": API_KEY_TYPE,
        "scope": "storage.read:/local",
    }
    body.update(fields)
    return body


# Wrong both as JSON and as a form.
TOKEN_FIELDS: dict[str, list[Any]] = {
    "grant_type": ["password"],
    "requested_token_type": ["urn:x"],
    "subject_token": ["x" * 9000],
    "subject_token_type": ["urn:x"],
    "scope": ["storage.read:/local " * 65 + "storage.read:/local/x"],
    "lifetime": [HUGE, str(HUGE), "9" * 5000, 0, -1, "-1", "1e3", " 60", "60\n", 21601],
    "expires_in": [HUGE, 0, "abc"],
    "uses": [HUGE, str(HUGE), 0, -3, "1.0", 1_000_001],
    "audience": ["has space", "x" * 201, "aud\n", "é"],
    "execution_id": ["exec-1\n", "a b", "x" * 201, "\x00"],
    "executionId": ["exec-1\n"],
}


def test_every_token_field_is_checked(gw: Running) -> None:
    for name, values in TOKEN_FIELDS.items():
        # 5 is a fine lifetime or use count; 1.5 and true stay wrong there.
        wrong = [v for v in WRONG_TYPES if v != 5 or name not in INTEGERS]
        for value in [*wrong, *values]:
            r = post(gw, "/token", exchange_body(gw, **{name: value}))
            refused(r)
            assert r.json()["errorCode"] in (40007, 40008), (name, value, r.text)
        for value in values:
            r = form(gw, "/token", exchange_body(gw, **{name: str(value)}))
            refused(r)
    # and nothing was issued on the way
    assert post(gw, "/token", exchange_body(gw, uses=3, lifetime=60)).status_code == 200
    with gw.gateway.store.transaction(write=False) as tx:
        count = tx.query_one("SELECT COUNT(*) FROM issued_tokens")
    assert count == (1,)


def test_the_largest_values_in_range_work(gw: Running) -> None:
    r = post(gw, "/token", exchange_body(gw, uses=1_000_000, lifetime="21600"))
    assert r.status_code == 200, r.text
    assert r.json()["expires_in"] == 21600


REVOKE_BODIES: list[dict[str, Any]] = [
    {},
    {"token": ""},
    {"jti": ["x"]},
    {"jti": {"a": 1}},
    {"jti": 5},
    {"jti": "a b"},
    {"jti": "x" * 65},
    {"jti": "abc\n"},
    {"token_id": ["x"]},
    {"execution_id": {"a": 1}},
    {"execution_id": ["exec-1"]},
    {"execution_id": "exec-1\n"},
    {"execution_id": HUGE},
    {"executionId": True},
    {"token": ["x"]},
    {"token": {"a": 1}},
    {"token": 5},
    {"token": "x" * 9000},
    {"token": "fgk_0011223344556677_" + "a" * 40, "token_type_hint": ["api_key"]},
    {"token": "abc", "token_type_hint": "weird"},
]


@pytest.mark.parametrize("headers", ["apikey", "bearer", "none"])
def test_every_revoke_field_is_checked(gw: Running, headers: str) -> None:
    tok = token(gw, gw.key, execution_id="exec-1")
    auth = {"apikey": {"apikey": gw.key}, "bearer": bearer(tok), "none": {}}[headers]
    for body in REVOKE_BODIES:
        r = post(gw, "/token/revoke", body, **auth)
        refused(r)
        assert r.json()["errorCode"] == 40007, (body, r.text)
        flat = {k: v for k, v in body.items() if isinstance(v, str)}
        if flat == body:
            refused(form(gw, "/token/revoke", flat, **auth))
    assert httpx.get(gw.api + "/path/local?action=exists", headers=bearer(tok)).status_code == 200


def test_revoke_database_paths_on_both_stores(gw_db: Running) -> None:
    """The values that used to reach the database (a 500, or a 503 "state database
    unavailable") on SQLite and PostgreSQL alike."""
    gw = gw_db
    tok = token(gw, gw.key, execution_id="exec-1")
    for body in (
        {"jti": ["x"]},
        {"execution_id": {"a": 1}},
        {"jti": jti_of(gw, tok) + "\n"},
        {"token": ["x"]},
    ):
        refused(post(gw, "/token/revoke", body, apikey=gw.key))
    refused(post(gw, "/token", exchange_body(gw, uses=HUGE)))
    refused(form(gw, "/token", exchange_body(gw, uses=str(HUGE))))
    assert httpx.get(gw.api + "/path/local?action=exists", headers=bearer(tok)).status_code == 200


def test_authenticate_fields(gw: Running) -> None:
    gw.gateway.users.set_password("admin", "a long password")
    for body in (
        {"username": ["admin"], "password": "a long password"},
        {"username": "admin", "password": {"a": 1}},
        {"username": "admin", "password": 5},
        {"username": "a" * 65, "password": "x"},
        {"username": "admin", "password": "x" * 1025},
        {"username": "admin"},
        {"password": "a long password"},
        ["admin", "a long password"],
        "admin",
        None,
    ):
        refused(post(gw, "/authenticate", body))
    # A name with a trailing newline is not the user's name.
    r = post(gw, "/authenticate", {"username": "admin\n", "password": "a long password"})
    is_error(r, 401, 40101)
    r = post(gw, "/authenticate", {"username": "admin", "password": "a long password"})
    assert r.status_code == 200


def test_external_keys_fields(gw: Running) -> None:
    h = {"apikey": gw.key}
    good = {"kind": "access_secret", "accessKey": "a", "secretKey": "b"}
    for body in (
        {"storageIdentifier": ["local"], "apiKey": "k"},
        {"storageIdentifier": {"a": 1}, "apiKey": "k"},
        {"storageIdentifier": "x" * 201, "apiKey": "k"},
        {"storageIdentifier": "local", "apiKey": ["k"]},
        {"storageIdentifier": "local", "apiKey": "k" * 40_000},
        {"storageIdentifier": "local", "credential": ["x"]},
        {"storageIdentifier": "local", "credential": {"kind": ["apikey"], "apiKey": "k"}},
        {"storageIdentifier": "local", "credential": {"kind": {"a": 1}, "apiKey": "k"}},
        {"storageIdentifier": "local", "credential": {"kind": "apikey", "apiKey": {"a": 1}}},
        {"storageIdentifier": "local", "credential": {"kind": "apikey", "apiKey": ""}},
        {"storageIdentifier": "local", "credential": {"kind": "apikey", "a b": "x"}},
        {"storageIdentifier": "local", "credential": {"kind": "apikey"}},
        {
            "storageIdentifier": "local",
            "credential": {"kind": "apikey", **{f"f{i}": "x" for i in range(9)}},
        },
        {"storageIdentifier": "local", "credential": good, "verify": "maybe"},
        {"storageIdentifier": "local", "credential": good, "verify": 3},
        {"storageIdentifier": "local", "credential": good, "verify": ["true"]},
    ):
        r = httpx.put(gw.api + "/user/externalKeys", json=body, headers=h)
        refused(r)
    assert httpx.get(gw.api + "/user/externalKeys", headers=h).json() == []


def test_native_fields(gw: Running) -> None:
    (gw.data / "f.txt").write_text("x")
    tok = token(gw, gw.key)
    for body in (
        {"path": ["/local/f.txt"]},
        {"path": {"a": 1}},
        {"path": "/local/f.txt", "method": ["GET"]},
        {"path": "/local/f.txt", "method": {"a": 1}},
        {"path": "/local/f.txt", "format": ["vip"]},
        {"path": "/local/f.txt", "format": {"a": 1}},
    ):
        r = post(gw, "/token/native", body, **bearer(tok))
        refused(r)


def test_explain_fields(gw: Running) -> None:
    tok = token(gw, gw.key)
    for body in (
        {"path": ["/local"]},
        {"path": {"a": 1}},
        {"path": "/local", "operation": ["read"]},
        {"path": "/local", "operation": {"a": 1}},
        {"path": "/local", "operation": 5},
        {"path": "/local", "token": ["x"]},
        {"path": "/local", "token": {"a": 1}},
        {"path": "/local", "token_id": ["x"]},
        {"path": "/local", "token_id": {"a": 1}},
        {"path": "/local", "user": ["admin"]},
        {"path": "/local", "user": {"a": 1}},
    ):
        r = post(gw, "/explain", body, apikey=gw.key)
        assert r.status_code < 500, (body, r.text)
        refused(r)
    assert post(gw, "/explain", {"path": "/local", "token": tok}, apikey=gw.key).status_code == 200
