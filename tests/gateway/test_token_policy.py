"""What a token must be to be honoured, over HTTP: it names this gateway as its audience
(public_url, the configured aliases, or the WLCG "any" value), it is not past its expiry
by more than the leeway setting; and a token for a mount that needs the user's own
credential is not issued to a user who stored none (storing one can be checked against
the real storage, here SeaweedFS)."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt

import tokens.service
from adapters.base import Credential
from adapters.s3 import create
from gateway.config import MountConfig
from tests.backends import GirderFixtures, Space
from tests.clock import FakeClock
from tests.gateway.helpers import is_error
from tests.gateway.token_helpers import ACCESS, bearer, exchange, status, token
from tests.server import Running, local_settings, running
from tests.testbeds import running_testbed

WLCG_ANY = "https://wlcg.cern.ch/jwt/v1/any"
PUBLIC = "https://gw.example.org/fedgate"
ALIAS = "https://alias.example.org"


def payload(tok: str) -> dict[str, Any]:
    part = tok.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def resign(gw: Running, tok: str, **changes: Any) -> str:
    """The same token with changed claims, signed with the gateway's own key (what an
    older fedgate, or one configured for another audience, would have minted)."""
    claims = {**payload(tok), **changes}
    claims = {k: v for k, v in claims.items() if v is not None}
    kid, key = gw.gateway.tokens._signing.current()
    return jwt.encode({"alg": "ES256", "kid": kid, "typ": "at+jwt"}, claims, key)


@pytest.fixture
def named_gw(tmp_path: Path) -> Iterator[Running]:
    settings = local_settings(tmp_path, public_url=PUBLIC + "/", token_audiences=(ALIAS,))
    with running(settings) as r:
        yield r


def test_tokens_name_the_gateway_and_no_other_audience_is_honoured(named_gw: Running) -> None:
    gw = named_gw
    own = token(gw, gw.key)
    assert payload(own)["aud"] == PUBLIC
    assert status(gw, bearer(own)) == 200
    for aud in (ALIAS, ALIAS + "/", WLCG_ANY):
        assert status(gw, bearer(token(gw, gw.key, audience=aud))) == 200, aud
    # Minted here for another service: that service's, not ours.
    for aud in ("https://storage.example.org", "vip", PUBLIC + "/other", "fedgate"):
        other = token(gw, gw.key, audience=aud)
        r = httpx.get(gw.api + "/path/local?action=exists", headers=bearer(other))
        is_error(r, 401, 40102)
        assert "audience" in r.json()["errorMessage"]
        # Nor can it be exchanged here for one of ours.
        for extra in ({}, {"audience": PUBLIC}):
            r = exchange(gw, other, "storage.read:/local", subject_type=ACCESS, **extra)
            is_error(r, 401, 40102)
    # A narrowing keeps its parent's audience.
    child = token(gw, own, subject_type=ACCESS)
    assert payload(child)["aud"] == PUBLIC
    # A token without aud (an older fedgate's), or with a list of audiences, is refused.
    for changed in (resign(gw, own, aud=None), resign(gw, own, aud=[PUBLIC])):
        is_error(httpx.get(gw.api + "/path/local?action=exists", headers=bearer(changed)), 401)
    assert status(gw, bearer(resign(gw, own))) == 200  # (the re-signing itself is sound)


def test_without_public_url_the_gateway_is_named_by_its_issuer(
    tmp_path: Path,
) -> None:
    with running(local_settings(tmp_path, token_issuer="lab-gateway")) as gw:
        own = token(gw, gw.key)
        assert payload(own)["aud"] == "lab-gateway" == payload(own)["iss"]
        assert status(gw, bearer(own)) == 200
        elsewhere = token(gw, gw.key, audience="https://gw.example.org")
        assert status(gw, bearer(elsewhere)) == 401


@pytest.mark.parametrize("leeway", [10, 0])
def test_expired_tokens_are_refused_after_the_leeway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, leeway: int
) -> None:
    default = leeway == 10
    settings = local_settings(tmp_path, **({} if default else {"token_leeway": leeway}))
    with running(settings) as gw:
        assert gw.gateway.tokens.leeway == leeway  # 10 s is the default
        clock = FakeClock().install(monkeypatch, tokens.service)
        tok = token(gw, gw.key, lifetime=60)
        clock.advance(60 + leeway)  # the last second of grace
        assert status(gw, bearer(tok)) == 200
        clock.advance(1)
        r = httpx.get(gw.api + "/path/local?action=exists", headers=bearer(tok))
        is_error(r, 401, 40102)
        assert "expired" in r.json()["errorMessage"]


# --- per-user credentials, against the real S3 (SeaweedFS) --------------------------------

ENDPOINT = "http://127.0.0.1:8333"
BUCKET = "fedgate-tests"
KEYS = {"accessKey": "testkey", "secretKey": "testsecret"}


@pytest.fixture(scope="module")
def s3_prefix() -> Iterator[str]:
    with running_testbed("seaweedfs"):
        adapter = create({"endpoint_url": ENDPOINT, "bucket": BUCKET})
        storage = adapter.bind(Credential("access_secret", dict(KEYS)))
        client = storage.client  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):  # already there: fine
            client.create_bucket(Bucket=BUCKET)
        prefix = f"policy-{uuid.uuid4().hex[:10]}"
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/in.txt", Body=b"input")
        yield prefix
        storage.delete(prefix)
        adapter.close()


@pytest.fixture
def s3_gw(tmp_path: Path, s3_prefix: str) -> Iterator[Running]:
    mounts = (
        MountConfig("local", "posix", {"root": str(tmp_path)}),
        MountConfig(
            "mine",
            "s3",
            {"endpoint_url": ENDPOINT, "bucket": BUCKET, "prefix": s3_prefix},
            credential_source="user",
        ),
    )
    with running(local_settings(tmp_path, mounts=mounts)) as r:
        yield r


def put_key(gw: Running, key: str, secret: str, **extra: Any) -> httpx.Response:
    cred = {"kind": "access_secret", "accessKey": KEYS["accessKey"], "secretKey": secret}
    body = {"storageIdentifier": "mine", "credential": cred, **extra}
    return httpx.put(gw.api + "/user/externalKeys", json=body, headers={"apikey": key})


def stored(gw: Running, key: str) -> list[str]:
    listing = httpx.get(gw.api + "/user/externalKeys", headers={"apikey": key}).json()
    return [k["storageIdentifier"] for k in listing]


def test_no_token_for_a_per_user_mount_without_a_stored_key(s3_gw: Running) -> None:
    gw = s3_gw
    for scope in ("storage.read:/mine", "storage.read:/local storage.modify:/mine/out"):
        r = exchange(gw, gw.key, scope)
        is_error(r, 400, 40007)
        message = r.json()["errorMessage"]
        assert "'mine'" in message and "/user/externalKeys" in message
    assert exchange(gw, gw.key, "storage.read:/local").status_code == 200  # other mounts: fine
    # Checking the key against the storage: a wrong one is refused and not stored.
    for secret, extra in (("not-the-secret", {"verify": True}), ("nope", {"verify": "true"})):
        r = put_key(gw, gw.key, secret, **extra)
        is_error(r, 400, 40004)
        assert "refused" in r.json()["errorMessage"] and secret not in r.text
    assert stored(gw, gw.key) == []
    is_error(exchange(gw, gw.key, "storage.read:/mine"), 400, 40007)
    # The right one passes the check; then the token is issued and reads from S3.
    r = put_key(gw, gw.key, KEYS["secretKey"], verify=True)
    assert r.status_code == 200 and r.json()["verified"] is True, r.text
    tok = token(gw, gw.key, "storage.read:/mine")
    url = gw.api + "/path/mine/in.txt?action=content"
    got = httpx.get(url, headers=bearer(tok), follow_redirects=True)
    assert got.status_code == 200 and got.content == b"input"
    # Unchecked (the default), a wrong key is stored as given.
    _, bob = gw.gateway.users.add_user("bob")
    assert put_key(gw, bob, "not-the-secret").status_code == 200
    assert stored(gw, bob) == ["mine"]
    # A mount that takes no user credential has nothing to check.
    body = {"storageIdentifier": "local", "apiKey": "k", "verify": True}
    r = httpx.put(gw.api + "/user/externalKeys", json=body, headers={"apikey": gw.key})
    is_error(r, 400, 40004)


def test_an_unreachable_storage_is_not_blamed_on_the_key(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    mounts = (
        MountConfig(
            "down",
            "s3",
            {
                "endpoint_url": f"http://127.0.0.1:{dead}",
                "bucket": BUCKET,
                "max_attempts": 1,
                "connect_timeout": 1,
            },
            credential_source="user",
        ),
    )
    with running(local_settings(tmp_path, mounts=mounts)) as gw:
        cred = {"kind": "access_secret", **KEYS}
        body = {"storageIdentifier": "down", "credential": cred, "verify": True}
        started = time.monotonic()
        r = httpx.put(gw.api + "/user/externalKeys", json=body, headers={"apikey": gw.key})
        assert r.status_code == 503, r.text
        assert time.monotonic() - started < 30
        assert stored(gw, gw.key) == []


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[server]\ntoken_leeway = 61\n", "token_leeway: expected 0-60"),
        ("[server]\ntoken_leeway = -1\n", "token_leeway: expected 0-60"),
        ('[server]\ntoken_audiences = ["a b"]\n', "token_audiences"),
        ('[server]\ntoken_audiences = ["ok", "bad\\n"]\n', "token_audiences"),
        ('[mounts."local\\n"]\ntype = "posix"\nroot = "/tmp"\n', "mount names"),
    ],
)
def test_token_settings_are_checked(tmp_path: Path, toml: str, expected: str) -> None:
    from gateway import config

    path = tmp_path / "fedgate.toml"
    path.write_text(toml)
    with pytest.raises(config.ConfigError, match=expected):
        config.load(str(path), env={})


# --- the same check against the real Girder -------------------------------------------------


class TestGirderKeyCheck(GirderFixtures):
    """The fixtures of tests/backends.py: a fresh folder on the real Girder."""

    def test_a_girder_key_is_checked_before_it_is_stored(
        self, girder_env: dict[str, Any], space: Space, tmp_path: Path
    ) -> None:
        root = space.options["root"]
        mount = MountConfig(
            "gv",
            "girder",
            {"api_url": girder_env["api_url"], "root": root},
            credential_source="user",
        )
        with running(local_settings(tmp_path, mounts=(mount,))) as gw:
            url = gw.api + "/user/externalKeys"
            h = {"apikey": gw.key}
            bogus = "B" * 40
            # VIP's body, with the check asked in the query.
            r = httpx.put(
                url + "?verify=true", json={"storageIdentifier": "gv", "apiKey": bogus}, headers=h
            )
            is_error(r, 400, 40004)
            assert bogus not in r.text
            assert stored(gw, gw.key) == []
            is_error(exchange(gw, gw.key, "storage.read:/gv"), 400, 40007)
            alice = girder_env["alice"]["api_key"]
            body = {"storageIdentifier": "gv", "apiKey": alice, "verify": True}
            r = httpx.put(url, json=body, headers=h)
            assert r.status_code == 200 and r.json()["verified"] is True, r.text
            tok = token(gw, gw.key, "storage.read:/gv")
            listing = httpx.get(gw.api + "/path/gv?action=list", headers=bearer(tok))
            assert listing.status_code == 200, listing.text
