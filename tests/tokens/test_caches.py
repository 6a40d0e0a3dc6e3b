"""Every cache of a verification, key or credential, crossed with the expiry or change of
what it caches, with an injected clock (tests/clock.py) instead of sleeping.

The caches (grep cache/TTL in tokens/): the token service's verified-signature cache
(keyed by the token's SHA-256), the revocation set (reloaded every ``revocation_poll``),
the signing keys (reloaded every 5 s, 1 s for an unknown kid), and the user service's
API-key and user caches (``cache_ttl``, never past a key's own expiry). Each runs on
SQLite and on the real PostgreSQL (tests/tokens/conftest.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

import tokens.revocation
import tokens.service
import tokens.signing
import tokens.users
from tests.clock import FakeClock
from tokens.errors import TokenError
from tokens.masterkey import MasterKeys
from tokens.scopes import parse_scopes
from tokens.service import TokenService
from tokens.store import Store
from tokens.users import User, UserService

ISS = "https://fedgate.test"
MK = MasterKeys.parse(MasterKeys.generate())
READ = parse_scopes("storage.read:/s3/data")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return FakeClock().install(
        monkeypatch, tokens.service, tokens.revocation, tokens.signing, tokens.users
    )


@pytest.fixture
def svc(store: Store, clock: FakeClock) -> TokenService:
    return TokenService(store, MK, ISS, leeway=30, revocation_poll=0.5)


@pytest.fixture
def replica(db_url: str, store: Store, clock: FakeClock) -> Iterator[TokenService]:
    other = Store.open(db_url)
    yield TokenService(other, MK, ISS, leeway=30, revocation_poll=0.5)
    other.close()


def reason(svc: TokenService, token: str) -> str | None:
    try:
        svc.verify(token)
    except TokenError as e:
        return e.reason
    return None


# --- the verified-signature cache -------------------------------------------------------


def test_a_cached_token_expires_all_the_same(svc: TokenService, clock: FakeClock) -> None:
    t = svc.issue("alice", READ, lifetime=60).access_token
    assert reason(svc, t) is None  # verified, and its claims cached
    clock.advance(60 + 30)  # exp + leeway: still inside the grace
    assert reason(svc, t) is None
    clock.advance(1)
    assert reason(svc, t) == "expired"


def test_a_cached_token_is_not_valid_before_its_time(svc: TokenService, clock: FakeClock) -> None:
    t = svc.issue("alice", READ, lifetime=600).access_token
    assert reason(svc, t) is None
    clock.advance(-31)  # the verifier's clock is behind by more than the leeway
    assert reason(svc, t) == "not_yet_valid"
    clock.advance(1)
    assert reason(svc, t) is None


def test_a_cached_token_is_revoked_at_once_here(svc: TokenService, clock: FakeClock) -> None:
    t = svc.issue("alice", READ).access_token
    assert reason(svc, t) is None
    assert svc.revoke(token=t) == 1
    assert reason(svc, t) == "revoked"  # the revoking process needs no poll


def test_a_narrowed_token_is_revoked_with_its_cached_parent(
    svc: TokenService, clock: FakeClock
) -> None:
    parent = svc.issue("alice", READ)
    child = svc.issue("alice", READ, parent=parent.claims)
    assert reason(svc, child.access_token) is None
    svc.revoke(token=parent.access_token)
    assert reason(svc, child.access_token) == "revoked"


# --- the revocation set, polled by every replica ---------------------------------------


def test_a_replica_sees_a_revocation_once_its_poll_is_due(
    svc: TokenService, replica: TokenService, clock: FakeClock
) -> None:
    t = svc.issue("alice", READ, execution_id="exec-1").access_token
    other = svc.issue("alice", READ, execution_id="exec-2").access_token
    assert reason(replica, t) is None and reason(replica, other) is None
    svc.revoke(execution_id="exec-1")
    clock.advance(0.5)
    assert reason(replica, t) == "revoked"
    assert reason(replica, other) is None


def test_a_revocation_outlives_the_token_it_kills(
    svc: TokenService, replica: TokenService, clock: FakeClock
) -> None:
    """Entries expire once no token they match can be valid: not a second before."""
    t = svc.issue("alice", READ, lifetime=svc.max_lifetime).access_token
    svc.revoke(token=t)
    for step in (svc.max_lifetime / 2, svc.max_lifetime / 2 + 29):
        clock.advance(step)
        svc._maybe_purge()  # what every issue does once a minute
        assert reason(replica, t) == "revoked"


# --- signing keys ----------------------------------------------------------------------


def test_a_key_rotated_on_a_replica_verifies_here_once_reloaded(
    svc: TokenService, replica: TokenService, clock: FakeClock
) -> None:
    old = svc.issue("alice", READ).access_token
    assert reason(replica, old) is None  # the replica has loaded the first key
    replica.rotate_signing_key()
    clock.advance(5.1)  # svc's key cache is due: it signs with the new key
    new = svc.issue("alice", READ)
    assert new.claims.kid != parse_kid(old)
    assert reason(replica, new.access_token) is None
    assert reason(svc, old) is None  # the superseded key still verifies its tokens


def test_a_retired_key_stops_verifying_even_when_cached(
    svc: TokenService, clock: FakeClock
) -> None:
    t = svc.issue("alice", READ, lifetime=60).access_token
    assert reason(svc, t) is None
    svc.rotate_signing_key()
    assert reason(svc, t) is None
    clock.advance(svc.max_lifetime + svc.leeway + 1)  # past retire_after
    assert svc._signing.verification_key(parse_kid(t)) is None
    assert reason(svc, t) == "expired"  # and the token itself had expired long before


def parse_kid(token: str) -> str:
    import base64
    import json

    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


# --- API keys and users ----------------------------------------------------------------


def test_a_cached_api_key_expires_with_the_key(store: Store, clock: FakeClock) -> None:
    users = UserService(store, cache_ttl=3600)  # a cache far longer than the key's life
    users.add_user("bob")
    key = users.new_api_key("bob", ttl=dt.timedelta(seconds=10))
    assert users.authenticate_key(key) == User("bob")
    clock.advance(9)
    assert users.authenticate_key(key) == User("bob")  # from the cache
    clock.advance(1)
    assert users.authenticate_key(key) is None


def test_a_key_revoked_by_a_replica_stops_within_the_cache_ttl(
    db_url: str, store: Store, clock: FakeClock
) -> None:
    here = UserService(store, cache_ttl=1.0)
    other_store = Store.open(db_url)
    try:
        there = UserService(other_store, cache_ttl=1.0)
        _, key = here.add_user("bob")
        assert here.authenticate_key(key) == User("bob")
        assert there.revoke_keys("bob") == 1
        clock.advance(1.0)
        assert here.authenticate_key(key) is None
    finally:
        other_store.close()


def test_a_wrong_key_is_not_cached_as_good(store: Store, clock: FakeClock) -> None:
    users = UserService(store, cache_ttl=3600)
    _, key = users.add_user("bob")
    prefix, kid, secret = key.split("_", 2)
    forged = f"{prefix}_{kid}_{'A' * len(secret)}"
    assert users.authenticate_key(forged) is None
    assert users.authenticate_key(key) == User("bob")
    assert users.authenticate_key(forged) is None


def test_a_user_deleted_by_a_replica_is_forgotten_within_the_cache_ttl(
    db_url: str, store: Store, clock: FakeClock
) -> None:
    here = UserService(store, cache_ttl=1.0)
    other_store = Store.open(db_url)
    try:
        there = UserService(other_store, cache_ttl=1.0)
        here.add_user("carol")
        assert here.get_user("carol") == User("carol")
        assert there.delete_user("carol")
        clock.advance(0.5)
        assert here.get_user("carol") == User("carol")  # the cache's window
        clock.advance(0.5)
        assert here.get_user("carol") is None
    finally:
        other_store.close()


def test_a_user_created_after_a_miss_is_found_at_once(store: Store, clock: FakeClock) -> None:
    users = UserService(store, cache_ttl=3600)
    assert users.get_user("dave") is None  # a cached "no such user"
    users.add_user("dave")
    assert users.get_user("dave") == User("dave")


def test_admin_rights_taken_away_are_seen_at_once_here(store: Store, clock: FakeClock) -> None:
    users = UserService(store, cache_ttl=3600)
    _, key = users.add_user("erin", admin=True)
    assert users.authenticate_key(key) == User("erin", True)
    users.set_admin("erin", False)
    assert users.authenticate_key(key) == User("erin", False)


# --- revocation entries and their lifetimes (mutants of tokens/revocation.py) ----------


def test_a_revoked_key_refuses_tokens_a_replica_mints_late(
    svc: TokenService, clock: FakeClock
) -> None:
    """A replica that still trusts the key from its cache may mint from it after the
    revocation: the key's entry outlives the longest token by a margin to catch those."""
    key = "key0alice0000001"
    events: list[tokens.revocation.Revocation] = []
    svc.on_revoke(events.append)
    early = svc.issue("alice", READ, lifetime=10, key_id=key).access_token
    clock.advance(20)  # past its expiry, inside the leeway: still accepted
    assert reason(svc, early) is None
    assert svc.revoke_api_key(key) == 1  # counted: it was still usable
    assert events[-1].key_id == key
    ttl = svc.max_lifetime + svc.leeway
    clock.advance(ttl + tokens.revocation._KEY_MARGIN_S - 1)
    late = svc.issue("alice", READ, key_id=key).access_token
    assert reason(svc, late) == "revoked"
    clock.advance(2)
    assert reason(svc, svc.issue("alice", READ, key_id=key).access_token) is None


def test_revoking_a_storage_reaches_tokens_inside_the_leeway(
    svc: TokenService, clock: FakeClock
) -> None:
    events: list[tokens.revocation.Revocation] = []
    svc.on_revoke(events.append)
    expiring = svc.issue("alice", parse_scopes("storage.read:/Xdata"), lifetime=10)
    other = svc.issue("alice", parse_scopes("storage.read:/data"))
    bobs = svc.issue("bob", parse_scopes("storage.read:/Xdata"))
    clock.advance(20)  # past exp, inside the leeway: still accepted, so still revoked
    assert svc.revoke_for_storage("alice", "Xdata") == 1
    assert reason(svc, expiring.access_token) == "revoked"
    assert reason(svc, other.access_token) is None  # /data is not /Xdata
    assert reason(svc, bobs.access_token) is None  # another user's
    assert events[-1].user == "alice" and events[-1].storage_id == "Xdata"


def test_old_rows_are_purged_and_live_ones_kept(
    svc: TokenService, store: Store, clock: FakeClock
) -> None:
    gone = svc.issue("alice", READ, lifetime=10)
    svc.revoke(token=gone.access_token)
    kept = svc.issue("alice", READ, lifetime=svc.max_lifetime)
    clock.advance(10 + svc.leeway + 61)  # past gone's grace, and the purge is due
    svc.issue("alice", READ)  # each issue purges at most once a minute
    with store.transaction(write=False) as tx:
        jtis = {r[0] for r in tx.query("SELECT jti FROM issued_tokens")}
        entries = tx.query("SELECT value FROM revocations")
    assert gone.claims.jti not in jtis and kept.claims.jti in jtis
    assert [e[0] for e in entries] == [gone.claims.jti]  # its entry lives on (ttl)
    clock.advance(svc.max_lifetime + 61)
    svc.issue("alice", READ)
    with store.transaction(write=False) as tx:
        assert tx.query("SELECT value FROM revocations") == []


def test_revoking_a_user_reaches_tokens_inside_the_leeway(
    svc: TokenService, clock: FakeClock
) -> None:
    expiring = svc.issue("alice", READ, lifetime=10)
    clock.advance(20)  # past exp, inside the leeway: still accepted
    assert reason(svc, expiring.access_token) is None
    assert svc.revoke(user="alice") == 1
    assert reason(svc, expiring.access_token) == "revoked"
