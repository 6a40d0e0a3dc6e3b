"""Revoking one API key, seen from another replica (its own Store on the same database),
with an injected clock: the replica stops accepting the key after its key cache (0.5 s)
and the tokens exchanged from it after its revocation poll (0.5 s), so both are gone
everywhere within a second. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import tokens.revocation
import tokens.service
import tokens.users
from tests.clock import FakeClock
from tokens.errors import TokenError
from tokens.masterkey import MasterKeys
from tokens.scopes import parse_scopes
from tokens.service import TokenService
from tokens.store import Store
from tokens.users import UserService, key_id_of

MK = MasterKeys.parse(MasterKeys.generate())
READ = parse_scopes("storage.read:/data")


@pytest.fixture
def other_store(db_url: str, store: Store) -> Iterator[Store]:
    other = Store.open(db_url)
    yield other
    other.close()


def test_a_revoked_key_and_its_tokens_die_on_a_replica_within_a_second(
    store: Store, other_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock().install(monkeypatch, tokens.users, tokens.service, tokens.revocation)
    users, tokens_ = UserService(store), TokenService(store, MK, "fedgate")
    r_users, r_tokens = UserService(other_store), TokenService(other_store, MK, "fedgate")
    _, key = users.add_user("alice")
    spare = users.new_api_key("alice")
    kid = key_id_of(key)
    assert kid is not None
    tok = tokens_.issue("alice", READ, key_id=kid)
    assert r_users.authenticate_key(key) is not None  # the replica checked and cached both
    r_tokens.verify(tok.access_token)

    assert users.revoke_key("alice", kid)
    assert tokens_.revoke_api_key(kid) == 1
    assert users.authenticate_key(key) is None  # this process: at once
    with pytest.raises(TokenError):
        tokens_.verify(tok.access_token)

    clock.advance(0.51)
    assert r_users.authenticate_key(key) is None
    with pytest.raises(TokenError) as ei:
        r_tokens.verify(tok.access_token)
    assert ei.value.reason == "revoked"
    # A token the replica minted while it still trusted the key is dead as well.
    late = r_tokens.issue("alice", READ, key_id=kid)
    with pytest.raises(TokenError):
        r_tokens.verify(late.access_token)
    # The user's other key is untouched.
    assert r_users.authenticate_key(spare) is not None


def test_last_use_is_recorded_at_most_once_a_minute(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock().install(monkeypatch, tokens.users)
    users = UserService(store, cache_ttl=0)
    _, key = users.add_user("bob")
    [info] = users.list_keys("bob")
    assert info.last_used is None
    users.authenticate_key(key)
    first = users.list_keys("bob")[0].last_used
    assert first == clock.time()
    clock.advance(30)
    users.authenticate_key(key)
    assert users.list_keys("bob")[0].last_used == first  # no write for every request
    clock.advance(31)
    users.authenticate_key(key)
    assert users.list_keys("bob")[0].last_used == clock.time()


def test_find_key_checks_the_secret(store: Store) -> None:
    users = UserService(store)
    _, key = users.add_user("carol")
    info = users.find_key(key)
    assert info is not None and info.user == "carol" and info.id == key_id_of(key)
    kid = key_id_of(key)
    assert users.find_key(f"fgk_{kid}_{'A' * 43}") is None
    assert users.find_key(key + "\n") is None
    assert users.find_key("fgk_0000000000000000_" + "A" * 43) is None
    assert users.get_key(str(kid)) == info
    assert users.get_key(f"{kid}\n") is None
