from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

import tokens.revocation
import tokens.service
from tests.clock import FakeClock
from tokens.errors import TokenError
from tokens.masterkey import MasterKeys
from tokens.revocation import Revocation
from tokens.scopes import Scope, parse_scopes
from tokens.service import TokenClaims, TokenService
from tokens.store import Store
from tokens.vault import KeyVault

ISS = "https://fedgate.test"
MK = MasterKeys.parse(MasterKeys.generate())
RW = parse_scopes("storage.read:/s3/data storage.modify:/s3/out")


@pytest.fixture
def svc(store: Store) -> TokenService:
    return TokenService(store, MK, ISS)


@pytest.fixture
def replica(db_url: str, store: Store) -> Iterator[TokenService]:
    """A second TokenService on its own Store on the same database."""
    other = Store.open(db_url)
    yield TokenService(other, MK, ISS)
    other.close()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    h, p, _ = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return json.loads(base64.urlsafe_b64decode(pad(h))), json.loads(
        base64.urlsafe_b64decode(pad(p))
    )


def mint(svc: TokenService, **overrides: Any) -> str:
    """A token signed with the service's real key but with chosen claims."""
    kid, key = svc._signing.current()
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISS,
        "sub": "alice",
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "j-" + str(time.time_ns()),
        "scope": "storage.read:/s3",
        "wlcg.ver": "1.0",
        "aud": ISS,  # a service with no audience configured names itself by its issuer
    }
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "ES256", "kid": kid}, claims, key)


def reason(svc: TokenService, token: str, **kw: Any) -> str:
    with pytest.raises(TokenError) as ei:
        svc.verify(token, **kw)
    if len(token) > 8:
        assert token not in str(ei.value)
    return ei.value.reason


def test_issue_and_verify(svc: TokenService) -> None:
    t = svc.issue("alice", RW, execution_id="exec-1", audience="vip")
    assert t.expires_in == 1200
    header, payload = parts(t.access_token)
    assert header["alg"] == "ES256" and header["kid"] == t.claims.kid
    assert payload["scope"] == "storage.read:/s3/data storage.modify:/s3/out"
    assert payload["wlcg.ver"] == "1.0"
    assert payload["iss"] == ISS and payload["sub"] == "alice" and payload["aud"] == "vip"
    assert payload["fedgate.execution_id"] == "exec-1"
    assert payload["exp"] - payload["iat"] == 1200
    c = svc.verify(t.access_token, audience="vip")
    assert c == t.claims
    assert c.scopes == tuple(RW)
    assert reason(svc, t.access_token, audience="other") == "invalid_token"
    assert t.access_token not in repr(t)


def test_lifetime_limits(svc: TokenService) -> None:
    assert svc.issue("alice", RW, lifetime=21600).expires_in == 21600
    for bad in (21601, 0, -5):
        with pytest.raises(TokenError) as ei:
            svc.issue("alice", RW, lifetime=bad)
        assert ei.value.reason == "invalid_request"
    with pytest.raises(TokenError) as ei:
        svc.issue("alice", [])
    assert ei.value.reason == "invalid_scope"
    with pytest.raises(TokenError) as ei:
        svc.issue("alice", RW, uses=0)
    assert ei.value.reason == "invalid_request"
    with pytest.raises(TokenError) as ei:
        svc.issue("alice", RW, execution_id="has space")
    assert ei.value.reason == "invalid_request"


def test_forged_tokens_rejected(svc: TokenService) -> None:
    good = svc.issue("alice", RW).access_token
    h, p, s = good.split(".")
    header, payload = parts(good)
    # Payload widened, signature kept.
    wide = b64(json.dumps({**payload, "scope": "storage.modify:/"}).encode())
    assert reason(svc, f"{h}.{wide}.{s}") == "invalid_token"
    # Signature bytes flipped.
    sig = bytearray(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))
    sig[5] ^= 1
    assert reason(svc, f"{h}.{p}.{b64(bytes(sig))}") == "invalid_token"
    # Signed by another key that claims our kid.
    other = ECKey.generate_key("P-256", private=True)
    assert reason(svc, jwt.encode(header, payload, other)) == "invalid_token"
    # alg none.
    none_h = b64(json.dumps({"alg": "none", "kid": header["kid"]}).encode())
    assert reason(svc, f"{none_h}.{p}.") == "invalid_token"
    assert reason(svc, f"{none_h}.{p}") == "invalid_token"
    # HS256 keyed with the public key (the classic confusion attack).
    jwk = svc.jwks()["keys"][0]
    for secret in (json.dumps(jwk).encode(), ECKey.import_key(jwk).as_pem(private=False)):
        hs_h = b64(json.dumps({"alg": "HS256", "kid": header["kid"]}).encode())
        mac = hmac.new(secret, f"{hs_h}.{p}".encode(), hashlib.sha256).digest()
        assert reason(svc, f"{hs_h}.{p}.{b64(mac)}") == "invalid_token"
    # Unknown and missing kid.
    for hdr in ({"alg": "ES256", "kid": "nope"}, {"alg": "ES256"}):
        h2 = b64(json.dumps(hdr).encode())
        assert reason(svc, f"{h2}.{p}.{s}") == "invalid_token"
    # Garbage.
    for junk in ("", "a.b.c", "x" * 10000, "....", good + "x"):
        assert reason(svc, junk) == "invalid_token"
    # Other issuer, well signed.
    assert reason(svc, mint(svc, iss="https://evil")) == "invalid_token"
    assert reason(svc, mint(svc, scope="storage.read:/a/../b")) == "invalid_token"
    assert reason(svc, mint(svc, exp="soon")) == "invalid_token"


def test_time_checks(svc: TokenService) -> None:
    now = int(time.time())
    assert reason(svc, mint(svc, exp=now - 120, iat=now - 900, nbf=now - 900)) == "expired"
    assert svc.leeway == 10  # the default: clock skew, not a minute of extra life
    assert reason(svc, mint(svc, exp=now - 15, iat=now - 900, nbf=now - 900)) == "expired"
    svc.verify(mint(svc, exp=now - 5, iat=now - 900, nbf=now - 900))  # within leeway
    assert reason(svc, mint(svc, nbf=now + 300)) == "not_yet_valid"
    svc.verify(mint(svc, nbf=now + 5))  # clock skew tolerated
    with pytest.raises(ValueError):
        TokenService(svc._store, MK, ISS, leeway=61)


def test_audience(store: Store) -> None:
    svc = TokenService(store, MK, ISS, audiences=("https://gw.example/", "https://alias"))
    t = svc.issue("alice", RW)
    assert parts(t.access_token)[1]["aud"] == "https://gw.example/"
    svc.verify(t.access_token)
    svc.verify(mint(svc, aud="https://alias/"))  # a trailing slash is not a new name
    svc.verify(mint(svc, aud="https://wlcg.cern.ch/jwt/v1/any"))
    for aud in ("https://other.example", "vip", "https://gw.example.evil", None):
        assert reason(svc, mint(svc, aud=aud)) == "invalid_token", aud
    assert reason(svc, mint(svc, aud=["https://gw.example/"])) == "invalid_token"
    # A token minted for another service (RFC 8693 audience) is refused here, and so are
    # the tokens narrowed from it: they inherit its audience.
    other = svc.issue("alice", RW, audience="https://storage.example")
    assert reason(svc, other.access_token) == "invalid_token"
    svc.verify(other.access_token, audience="https://storage.example")  # what that service does
    child = svc.issue("alice", RW[:1], parent=svc.verify(t.access_token))
    assert child.claims.aud == "https://gw.example/"
    with pytest.raises(TokenError) as ei:
        svc.issue("alice", RW[:1], parent=t.claims, audience="https://storage.example")
    assert ei.value.reason == "invalid_target"
    with pytest.raises(ValueError):
        TokenService(store, MK, ISS, audiences=("has space",))


def test_labels_are_matched_whole(svc: TokenService) -> None:
    for bad in ("exec-1\n", "exec\n1", "", "x" * 201, "é"):
        with pytest.raises(TokenError) as ei:
            svc.issue("alice", RW, execution_id=bad)
        assert ei.value.reason == "invalid_request"
        with pytest.raises(TokenError):
            svc.issue("alice", RW, audience=bad)
    for bad_uses in (10**23, 1_000_001, True, 0, -1):
        with pytest.raises(TokenError) as ei:
            svc.issue("alice", RW, uses=bad_uses)
        assert ei.value.reason == "invalid_request"
    assert svc.issue("alice", RW, uses=1_000_000).claims.uses == 1_000_000
    with pytest.raises(TokenError):
        svc.issue("alice", RW, lifetime=True)


def test_revoke_api_key_kills_its_tokens_everywhere(
    svc: TokenService, replica: TokenService
) -> None:
    a = svc.issue("alice", RW, key_id="00112233aabbccdd")
    child = replica.issue("alice", RW[:1], parent=a.claims)
    assert child.claims.key_id == "00112233aabbccdd"  # inherited, cannot be changed
    other = svc.issue("alice", RW, key_id="ffeeddccbbaa9988")
    plain = svc.issue("alice", RW)
    for t in (a, child, other, plain):
        replica.verify(t.access_token)  # cached as good on the replica
    assert svc.revoke_api_key("00112233aabbccdd") == 2
    assert svc.revoke_api_key("00112233aabbccdd") == 0  # counted once
    for s in (svc, replica):
        s._revoked._loaded_at = -1e18  # the replica's next poll
        assert reason(s, a.access_token) == "revoked"
        assert reason(s, child.access_token) == "revoked"
        s.verify(other.access_token)
        s.verify(plain.access_token)
    # A replica that still trusted the key from its cache mints a token after the
    # revocation: it is dead on arrival.
    late = replica.issue("alice", RW, key_id="00112233aabbccdd")
    assert reason(svc, late.access_token) == "revoked"
    with pytest.raises(TokenError):
        svc.revoke_api_key("not a key id")


def test_is_narrowed_from(svc: TokenService) -> None:
    root = svc.issue("alice", RW)
    mid = svc.issue("alice", RW, parent=root.claims)
    leaf = svc.issue("alice", RW[:1], parent=mid.claims)
    sibling = svc.issue("alice", RW)
    assert svc.is_narrowed_from(leaf.claims.jti, root.claims.jti)
    assert svc.is_narrowed_from(leaf.claims.jti, mid.claims.jti)
    assert svc.is_narrowed_from(mid.claims.jti, mid.claims.jti)
    assert not svc.is_narrowed_from(root.claims.jti, mid.claims.jti)
    assert not svc.is_narrowed_from(sibling.claims.jti, root.claims.jti)
    assert not svc.is_narrowed_from("unknown", root.claims.jti)


def test_hot_verify_is_fast(svc: TokenService) -> None:
    token = svc.issue("alice", RW).access_token
    svc.verify(token)
    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        svc.verify(token)
    rate = n / (time.perf_counter() - t)
    assert rate > 20_000, rate


def test_revoke_by_token_and_jti(svc: TokenService) -> None:
    a, b, c = (svc.issue("alice", RW) for _ in range(3))
    svc.verify(a.access_token)
    assert svc.revoke(token=a.access_token) == 1
    assert reason(svc, a.access_token) == "revoked"
    assert svc.revoke(jti=b.claims.jti) == 1
    assert reason(svc, b.access_token) == "revoked"
    svc.verify(c.access_token)
    assert svc.revoke(token="garbage") == 0  # RFC 7009: nothing happens
    assert svc.revoke(jti=c.claims.jti, user="mallory") == 0  # not theirs
    svc.verify(c.access_token)
    with pytest.raises(TokenError):
        svc.revoke()


def test_revoke_by_execution_and_user(svc: TokenService) -> None:
    e1 = svc.issue("alice", RW, execution_id="exec-1")
    e1b = svc.issue("alice", RW, execution_id="exec-1")
    e2 = svc.issue("alice", RW, execution_id="exec-2")
    bob = svc.issue("bob", RW, execution_id="exec-2")
    assert svc.revoke(execution_id="exec-1") == 2
    assert reason(svc, e1.access_token) == "revoked"
    assert reason(svc, e1b.access_token) == "revoked"
    assert svc.revoke(execution_id="exec-2", user="bob") == 1
    assert reason(svc, bob.access_token) == "revoked"
    svc.verify(e2.access_token)  # alice's exec-2 is untouched
    later = svc.issue("alice", RW, execution_id="exec-1")
    assert reason(svc, later.access_token) == "revoked"  # the execution is over
    assert svc.revoke(user="alice") == 1
    assert reason(svc, e2.access_token) == "revoked"
    svc.verify(svc.issue("alice", RW).access_token)  # new tokens work again


def test_narrowing_never_widens(svc: TokenService) -> None:
    parent = svc.issue("alice", RW, lifetime=600, uses=5, audience="vip", execution_id="x1")
    p = parent.claims
    child = svc.issue("alice", parse_scopes("storage.read:/s3/data/in"), lifetime=3600, parent=p)
    c = child.claims
    assert c.exp <= p.exp and child.expires_in <= 600
    assert c.uses == 5 and c.aud == "vip" and c.execution_id == "x1"
    assert c.parent == p.jti and c.chain == (p.jti,)
    assert svc.verify(child.access_token, audience="vip") == c
    assert svc.issue("alice", parse_scopes("storage.create:/s3/out/x"), parent=p)

    def refused(scopes: str, **kw: Any) -> str:
        with pytest.raises(TokenError) as ei:
            svc.issue(kw.pop("user", "alice"), parse_scopes(scopes), parent=p, **kw)
        return ei.value.reason

    assert refused("storage.read:/s3") == "invalid_scope"
    assert refused("storage.read:/s3/database") == "invalid_scope"
    assert refused("storage.modify:/s3/data") == "invalid_scope"
    assert refused("storage.read:/s3/out") == "invalid_scope"
    assert refused("storage.read:/s3/data", uses=6) == "invalid_request"
    assert refused("storage.read:/s3/data", audience="other") == "invalid_target"
    assert refused("storage.read:/s3/data", execution_id="x2") == "invalid_request"
    assert refused("storage.read:/s3/data", user="bob") == "invalid_request"
    # A grandchild is bounded by the child, and the chain is recorded.
    g = svc.issue("alice", parse_scopes("storage.read:/s3/data/in/f"), uses=2, parent=c)
    assert g.claims.chain == (p.jti, c.jti)
    with pytest.raises(TokenError) as ei:
        svc.issue("alice", parse_scopes("storage.read:/s3/data"), parent=c)
    assert ei.value.reason == "invalid_scope"


def test_revocation_cascades_to_narrowed_tokens(svc: TokenService) -> None:
    root = svc.issue("alice", RW)
    child = svc.issue("alice", parse_scopes("storage.read:/s3/data"), parent=root.claims)
    grand = svc.issue("alice", parse_scopes("storage.read:/s3/data/x"), parent=child.claims)
    sibling = svc.issue("alice", RW)
    assert svc.revoke(jti=root.claims.jti) == 3
    for t in (root, child, grand):
        assert reason(svc, t.access_token) == "revoked"
    svc.verify(sibling.access_token)
    with pytest.raises(TokenError) as ei:
        svc.issue("alice", parse_scopes("storage.read:/s3/data"), parent=child.claims)
    assert ei.value.reason == "revoked"


def test_storage_cascade(svc: TokenService) -> None:
    s3 = svc.issue("alice", parse_scopes("storage.read:/s3/data"))
    s3x = svc.issue("alice", parse_scopes("storage.read:/s3x/data"))
    everything = svc.issue("alice", parse_scopes("storage.read:/"))
    girder = svc.issue("alice", parse_scopes("storage.read:/girder"))
    bobs = svc.issue("bob", parse_scopes("storage.read:/s3"))
    child = svc.issue("alice", parse_scopes("storage.read:/s3/data/a"), parent=s3.claims)
    seen: list[Revocation] = []
    svc.on_revoke(seen.append)
    assert svc.revoke_for_storage("alice", "s3") == 3
    for t in (s3, everything, child):
        assert reason(svc, t.access_token) == "revoked"
    for t in (s3x, girder, bobs):
        svc.verify(t.access_token)
    assert seen and seen[0].storage_id == "s3"
    assert set(seen[0].jtis) == {s3.claims.jti, everything.claims.jti, child.claims.jti}


def test_on_revoke_callback_errors_do_not_block(svc: TokenService) -> None:
    def boom(_: Revocation) -> None:
        raise RuntimeError("backend down")

    got: list[Revocation] = []
    svc.on_revoke(boom)
    svc.on_revoke(got.append)
    t = svc.issue("alice", RW, execution_id="e9")
    assert svc.revoke(execution_id="e9") == 1
    assert got == [Revocation((t.claims.jti,), "e9", None)]


def test_uses_across_replicas(svc: TokenService, replica: TokenService) -> None:
    t = svc.issue("alice", RW, uses=3)
    c = replica.verify(t.access_token)
    svc.consume_use(t.claims)
    replica.consume_use(c)
    assert svc.remaining_uses(t.claims) == 1
    svc.consume_use(t.claims)
    for s in (svc, replica):
        with pytest.raises(TokenError) as ei:
            s.consume_use(c)
        assert ei.value.reason == "exhausted"
    unlimited = svc.issue("alice", RW)
    for _ in range(5):
        replica.consume_use(unlimited.claims)  # no count, no limit


def test_child_uses_draw_on_parent(svc: TokenService) -> None:
    parent = svc.issue("alice", RW, uses=3)
    a = svc.issue("alice", RW, uses=2, parent=parent.claims)
    b = svc.issue("alice", RW, uses=2, parent=parent.claims)
    svc.consume_use(a.claims)
    svc.consume_use(b.claims)
    svc.consume_use(a.claims)
    assert svc.remaining_uses(parent.claims) == 0
    with pytest.raises(TokenError) as ei:
        svc.consume_use(b.claims)  # b has 1 left itself, but the parent is spent
    assert ei.value.reason == "exhausted"
    assert svc.remaining_uses(b.claims) == 1  # the refused attempt took nothing
    with pytest.raises(TokenError) as ei:
        svc.issue("alice", RW, parent=parent.claims)
    assert ei.value.reason == "exhausted"


def test_concurrent_consumption_never_overspends(db_url: str, store: Store) -> None:
    import threading

    svc = TokenService(store, MK, ISS)
    t = svc.issue("alice", RW, uses=20)
    stores = [Store.open(db_url) for _ in range(2)]
    services = [TokenService(s, MK, ISS) for s in stores]
    ok: list[int] = []

    def work(s: TokenService) -> None:
        for _ in range(15):
            try:
                s.consume_use(t.claims)
                ok.append(1)
            except TokenError:
                pass

    threads = [threading.Thread(target=work, args=(s,)) for s in services * 2]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for s in stores:
        s.close()
    assert len(ok) == 20


def test_revocation_seen_by_replica_within_a_second(
    svc: TokenService, replica: TokenService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replica reloads the revocation set once its poll interval (0.5 s) has passed:
    with an injected clock, not a race against the wall clock."""
    clock = FakeClock().install(monkeypatch, tokens.service, tokens.revocation)
    t = svc.issue("alice", RW)
    replica.verify(t.access_token)  # cached and known good on the replica
    svc.revoke(token=t.access_token)
    clock.advance(0.51)
    with pytest.raises(TokenError) as e:
        replica.verify(t.access_token)
    assert e.value.reason == "revoked"


def test_signing_key_rotation(svc: TokenService, replica: TokenService) -> None:
    old = svc.issue("alice", RW)
    kid1 = old.claims.kid
    assert [k["kid"] for k in svc.jwks()["keys"]] == [kid1]
    kid2 = svc.rotate_signing_key()
    assert kid2 != kid1
    new = svc.issue("alice", RW)
    assert new.claims.kid == kid2
    assert {k["kid"] for k in svc.jwks()["keys"]} == {kid1, kid2}
    assert all("d" not in k for k in svc.jwks()["keys"])  # public parts only
    for s in (svc, replica):  # the replica learns the new kid from the store
        s.verify(old.access_token)
        s.verify(new.access_token)
    # Tokens made by any replica verify everywhere.
    svc.verify(replica.issue("alice", RW).access_token)


def test_old_signing_key_retires(store: Store) -> None:
    svc = TokenService(store, MK, ISS, default_lifetime=1, max_lifetime=1, leeway=0)
    old = svc.issue("alice", RW)
    svc.rotate_signing_key()
    time.sleep(1.1)
    svc2 = TokenService(store, MK, ISS, default_lifetime=1, max_lifetime=1, leeway=0)
    assert [k["kid"] for k in svc2.jwks()["keys"]] != [old.claims.kid]
    assert len(svc2.jwks()["keys"]) == 1
    assert reason(svc2, old.access_token) == "invalid_token"


def test_signing_keys_encrypted_and_survive_master_rotation(db_url: str, store: Store) -> None:
    svc = TokenService(store, MK, ISS)
    t = svc.issue("alice", RW)
    with store.transaction(write=False) as tx:
        rows = tx.query("SELECT * FROM signing_keys")
    assert b"PRIVATE KEY" not in repr(rows).encode()
    new = MasterKeys.parse(MasterKeys.generate())
    assert KeyVault(store, MK).rotate(new) == 1
    other = Store.open(db_url)
    try:
        restarted = TokenService(other, new, ISS)
        assert restarted.verify(t.access_token).jti == t.claims.jti
        assert restarted.issue("alice", RW).claims.kid == t.claims.kid
    finally:
        other.close()


def test_claims_are_typed(svc: TokenService) -> None:
    c = svc.issue("alice", RW, uses=2).claims
    assert isinstance(c, TokenClaims)
    assert c.uses == 2 and c.parent is None and c.chain == () and c.iss == ISS
    assert all(isinstance(s, Scope) for s in c.scopes)
