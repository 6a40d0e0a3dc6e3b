"""TokenService at its edges: the messages a client reads, delegation chains at their
longest, uses of a token the store no longer knows, and who hears of a revocation."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest

import tokens.revocation
import tokens.service
from tests.clock import FakeClock
from tokens.errors import TokenError
from tokens.masterkey import MasterKeys
from tokens.revocation import Revocation
from tokens.scopes import parse_scopes
from tokens.service import _MAX_CHAIN, TokenService
from tokens.store import Store

ISS = "https://fedgate.test"
RW = parse_scopes("storage.read:/s3/data storage.modify:/s3/out")


@pytest.fixture
def svc(store: Store) -> TokenService:
    return TokenService(store, MasterKeys.parse(MasterKeys.generate()), ISS)


def refused(call: object, *args: object, **kwargs: object) -> TokenError:
    with pytest.raises(TokenError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_messages_say_why(svc: TokenService) -> None:
    root = svc.issue("alice", RW, uses=1)
    expired = dataclasses.replace(root.claims, exp=int(time.time()) - 1)
    e = refused(svc.issue, "alice", RW, parent=expired)
    assert (e.reason, str(e)) == ("expired", "the subject token has expired")
    svc.revoke(jti=root.claims.jti)
    e = refused(svc.issue, "alice", RW, parent=root.claims)
    assert (e.reason, str(e)) == ("revoked", "the subject token has been revoked")
    e = refused(svc.revoke)
    assert (e.reason, str(e)) == ("invalid_request", "nothing to revoke")
    e = refused(svc.revoke_api_key, "not a key id!")
    assert (e.reason, str(e)) == ("invalid_request", "malformed API key id")
    counted = svc.issue("alice", RW, uses=1)
    svc.consume_use(counted.claims)
    e = refused(svc.consume_use, counted.claims)
    assert (e.reason, str(e)) == ("exhausted", "token has no uses left")


def test_the_longest_chain_still_knows_its_root(svc: TokenService) -> None:
    tokens = [svc.issue("alice", RW)]
    for _ in range(_MAX_CHAIN):
        tokens.append(svc.issue("alice", RW, parent=tokens[-1].claims))
    deepest = tokens[-1].claims
    assert len(deepest.chain) == _MAX_CHAIN
    assert svc.is_narrowed_from(deepest.jti, tokens[0].claims.jti)
    assert svc.is_narrowed_from(deepest.jti, tokens[1].claims.jti)
    e = refused(svc.issue, "alice", RW, parent=deepest)
    assert str(e) == "delegation chain too long"
    assert svc.lookup(deepest.jti) is not None


def test_uses_of_a_token_the_store_forgot(svc: TokenService) -> None:
    counted = svc.issue("alice", RW, uses=3)
    assert svc.remaining_uses(counted.claims) == 3
    unknown = dataclasses.replace(counted.claims, jti="forgotten-jti")
    assert svc.remaining_uses(unknown) == 0
    assert refused(svc.consume_use, unknown).reason == "exhausted"
    assert svc.remaining_uses(svc.issue("alice", RW).claims) is None


def test_every_revocation_that_names_something_is_announced(
    svc: TokenService, caplog: pytest.LogCaptureFixture
) -> None:
    """Backends clean up their grants for an execution or an API key even when no token
    of it is live any more; a revocation that named nothing known is not announced."""
    heard: list[Revocation] = []
    svc.on_revoke(heard.append)
    assert svc.revoke(execution_id="exec-without-tokens") == 0
    assert heard == [Revocation((), "exec-without-tokens", None)]
    assert svc.revoke_api_key("0123456789abcdef") == 0
    assert heard[-1] == Revocation((), key_id="0123456789abcdef")
    assert svc.revoke(jti="unknown-jti") == 0
    assert len(heard) == 2

    def broken(_: Revocation) -> None:
        raise RuntimeError("backend down")

    svc.on_revoke(broken)
    with caplog.at_level(logging.ERROR, logger="fedgate"):
        assert svc.revoke(execution_id="e2") == 0
    assert [r.getMessage() for r in caplog.records] == ["revocation callback failed"]


def test_lookup_rebuilds_a_token_from_its_record(
    svc: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an operator sees when they explain a token by the id the audit shows."""
    clock = FakeClock()
    clock.install(monkeypatch, tokens.service, tokens.revocation)
    root = svc.issue("alice", RW, execution_id="e1", uses=2, lifetime=600)
    child = svc.issue("alice", RW[:1], parent=root.claims)
    leaf = svc.issue("alice", RW[:1], parent=child.claims)
    found = svc.lookup(leaf.claims.jti)
    assert found is not None
    claims, state = found
    assert state == "valid"
    assert (claims.jti, claims.sub, claims.scopes) == (leaf.claims.jti, "alice", tuple(RW[:1]))
    assert (claims.iat, claims.exp) == (leaf.claims.iat, leaf.claims.exp)
    assert claims.execution_id == "e1" and claims.parent == child.claims.jti
    assert claims.chain == (root.claims.jti, child.claims.jti)  # root first
    assert claims.kid == "" and claims.aud is None  # the record keeps neither
    found = svc.lookup(root.claims.jti)
    assert found is not None and found[0].parent is None and found[0].chain == ()
    # Uses: valid while one is left, exhausted at none.
    svc.consume_use(root.claims)
    assert svc.lookup(root.claims.jti) == (found[0], "valid")
    svc.consume_use(root.claims)
    assert svc.lookup(root.claims.jti) == (found[0], "exhausted")
    # Expiry, with the service's leeway: still valid at exp + leeway, expired after.
    clock.advance(root.claims.exp + svc.leeway - clock.wall)
    at_the_edge = svc.lookup(child.claims.jti)
    assert at_the_edge is not None and at_the_edge[1] == "valid"
    clock.advance(1)
    child_found = svc.lookup(child.claims.jti)
    assert child_found is not None and child_found[1] == "expired"
    svc.revoke(jti=leaf.claims.jti)
    leaf_found = svc.lookup(leaf.claims.jti)
    assert leaf_found is not None and leaf_found[1] == "revoked"


def test_lookup_takes_ids_of_1_to_200_characters(store: Store, svc: TokenService) -> None:
    now = int(time.time())
    with store.transaction() as tx:
        for jti in ("", "j", "j" * 200, "j" * 201):  # "" and 201: never asked for
            tx.execute(
                "INSERT INTO issued_tokens (jti, sub, scope, iat, exp) VALUES (?, ?, ?, ?, ?)",
                (jti, "alice", "storage.read:/s3", now, now + 600),
            )
    for jti in ("j", "j" * 200):
        found = svc.lookup(jti)
        assert found is not None and found[0].jti == jti and found[1] == "valid"
    for bad in ("j" * 201, "", 5, None):
        assert svc.lookup(bad) is None  # type: ignore[arg-type]


def test_lookup_of_records_a_chain_cannot_be_rebuilt_from(store: Store, svc: TokenService) -> None:
    """Forensics reads what is on record: a parent row already purged ends the chain
    there, and rows that name each other as parents (a damaged table) end it at the
    longest chain a token may have instead of looping."""
    now = int(time.time())
    rows = [("orphan", "purged"), ("a", "b"), ("b", "a")]
    with store.transaction() as tx:
        for jti, parent in rows:
            tx.execute(
                "INSERT INTO issued_tokens (jti, sub, parent, scope, iat, exp) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (jti, "alice", parent, "storage.read:/s3", now, now + 600),
            )
    orphan = svc.lookup("orphan")
    assert orphan is not None and orphan[0].chain == ("purged",)
    looped = svc.lookup("a")
    assert looped is not None and len(looped[0].chain) == _MAX_CHAIN
    assert looped[0].chain[-1] == "b" and set(looped[0].chain) == {"a", "b"}


def test_revoking_an_execution_of_one_user(
    svc: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By execution id and token id at once, restricted to a user: every token either
    names is revoked and counted, including one expiring within the leeway, and the
    backends hear whose revocation it was."""
    clock = FakeClock()
    clock.install(monkeypatch, tokens.service, tokens.revocation)
    heard: list[Revocation] = []
    svc.on_revoke(heard.append)
    in_exec = svc.issue("alice", RW, execution_id="e1", lifetime=600)
    other = svc.issue("alice", RW, execution_id="e2", lifetime=3600)
    bobs = svc.issue("bob", RW, execution_id="e1", lifetime=3600)
    clock.advance(600 - svc.leeway // 2)  # in_exec expires within the leeway: still valid
    assert svc.revoke(jti=other.claims.jti, execution_id="e1", user="alice") == 2
    assert heard == [
        Revocation(tuple(sorted((in_exec.claims.jti, other.claims.jti))), "e1", "alice")
    ]
    assert svc.verify(bobs.access_token).jti == bobs.claims.jti  # bob's run of e1 is his own
