"""POST /token/revoke as an attacker holding one token of a user tries it: a Bearer token
revokes only itself and the tokens narrowed from it; token ids and execution ids need the
user's API key (or an admin). Every form of the request (token, jti/token_id,
execution_id; JSON and form bodies; anonymous, Bearer, API key, admin) over HTTP, on
SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.gateway.helpers import is_error
from tests.gateway.token_helpers import (
    bearer,
    gw_db,
    jti_of,
    narrow,
    send,
    status,
    token,
)
from tests.server import Running

__all__ = ["gw_db"]

BODY_KINDS = [pytest.param(True, id="json"), pytest.param(False, id="form")]


@dataclass
class Family:
    """alice's tokens: root -> child -> grandchild, a sibling in the same execution, and
    a token of another execution; bob's token in alice's execution id."""

    alice: str  # alice's API key
    bob: str  # bob's API key
    root: str
    child: str
    grandchild: str
    sibling: str
    other_exec: str
    bobs: str

    def all(self) -> dict[str, str]:
        return {
            "root": self.root,
            "child": self.child,
            "grandchild": self.grandchild,
            "sibling": self.sibling,
            "other_exec": self.other_exec,
            "bobs": self.bobs,
        }


def family(gw: Running) -> Family:
    _, alice = gw.gateway.users.add_user("alice")
    _, bob = gw.gateway.users.add_user("bob")
    root = token(gw, alice, execution_id="exec-1")
    child = narrow(gw, root)
    return Family(
        alice=alice,
        bob=bob,
        root=root,
        child=child,
        grandchild=narrow(gw, child),
        sibling=token(gw, alice, execution_id="exec-1"),
        other_exec=token(gw, alice, execution_id="exec-2"),
        bobs=token(gw, bob, execution_id="exec-1"),
    )


def alive(gw: Running, fam: Family) -> set[str]:
    return {name for name, tok in fam.all().items() if status(gw, bearer(tok)) == 200}


def revoke(gw: Running, body: dict[str, str], as_json: bool, **headers: str) -> httpx.Response:
    return send(gw.api + "/token/revoke", body, as_json, headers=headers)


@pytest.mark.parametrize("as_json", BODY_KINDS)
def test_a_bearer_token_cannot_revoke_siblings_ancestors_or_executions(
    gw_db: Running, as_json: bool
) -> None:
    gw = gw_db
    fam = family(gw)
    everyone = set(fam.all())
    as_child = bearer(fam.child)
    attempts = [
        {"jti": jti_of(gw, fam.sibling)},
        {"token_id": jti_of(gw, fam.sibling)},
        {"jti": jti_of(gw, fam.root)},  # its own parent
        {"jti": jti_of(gw, fam.bobs)},
        {"jti": "unknownjti0000000000aa"},
        {"execution_id": "exec-1"},  # its own execution: siblings would go with it
        {"execution_id": "exec-2"},
        {"token": fam.sibling},
        {"token": fam.root},
        {"token": fam.bobs},
        {"token": fam.grandchild, "jti": jti_of(gw, fam.sibling)},  # all or nothing
        {"token": fam.grandchild, "execution_id": "exec-2"},
    ]
    for body in attempts:
        r = revoke(gw, body, as_json, **as_child)
        is_error(r, 403, 40303)
        assert "API key" in r.json()["errorMessage"] or "another user" in r.json()["errorMessage"]
    assert alive(gw, fam) == everyone
    gw.gateway.audit.flush()
    denied = httpx.get(
        gw.api + "/audit",
        params={"event": "revoke", "result": "denied"},
        headers={"apikey": gw.key},
    ).json()
    assert len(denied) == len(attempts)
    assert {e["token_id"] for e in denied} == {jti_of(gw, fam.child)}
    assert all(e["status"] == 403 and e["reason"] for e in denied)
    # Unauthenticated, an id is refused outright.
    for body in ({"jti": jti_of(gw, fam.sibling)}, {"execution_id": "exec-1"}):
        is_error(revoke(gw, body, as_json), 401, 40101)
    assert alive(gw, fam) == everyone


@pytest.mark.parametrize("as_json", BODY_KINDS)
def test_a_bearer_token_revokes_its_descendants_and_itself(gw_db: Running, as_json: bool) -> None:
    gw = gw_db
    fam = family(gw)
    as_child = bearer(fam.child)
    body = {"token": fam.grandchild, "token_type_hint": "access_token"}
    r = revoke(gw, body, as_json, **as_child)
    assert r.status_code == 200 and r.json() == {"revoked": 1}, r.text
    assert alive(gw, fam) == set(fam.all()) - {"grandchild"}
    r = revoke(gw, {"jti": jti_of(gw, fam.child)}, as_json, **as_child)  # itself, by id
    assert r.status_code == 200 and r.json() == {"revoked": 1}, r.text
    assert alive(gw, fam) == set(fam.all()) - {"grandchild", "child"}
    # The root may revoke by id what was narrowed from it (here: already revoked).
    r = revoke(gw, {"jti": jti_of(gw, fam.grandchild)}, as_json, **bearer(fam.root))
    assert r.status_code == 200 and r.json() == {"revoked": 0}
    r = revoke(gw, {"token": fam.root}, as_json, **bearer(fam.root))
    assert r.json() == {"revoked": 1}
    assert alive(gw, fam) == {"sibling", "other_exec", "bobs"}


@pytest.mark.parametrize("as_json", BODY_KINDS)
def test_the_api_key_revokes_its_users_executions_and_ids_only(
    gw_db: Running, as_json: bool
) -> None:
    gw = gw_db
    fam = family(gw)
    alice, bob = {"apikey": fam.alice}, {"apikey": fam.bob}
    # bob's key reaches none of alice's tokens: by id nothing happens, a token is refused.
    assert revoke(gw, {"jti": jti_of(gw, fam.root)}, as_json, **bob).json() == {"revoked": 0}
    is_error(revoke(gw, {"token": fam.sibling}, as_json, **bob), 403, 40303)
    assert revoke(gw, {"execution_id": "exec-2"}, as_json, **bob).json() == {"revoked": 0}
    assert alive(gw, fam) == set(fam.all())
    # alice's key revokes her execution exec-1 (root, its narrowings, the sibling), not
    # bob's token that carries the same execution id.
    r = revoke(gw, {"execution_id": "exec-1"}, as_json, **alice)
    assert r.status_code == 200 and r.json() == {"revoked": 4}, r.text
    assert alive(gw, fam) == {"other_exec", "bobs"}
    r = revoke(gw, {"token_id": jti_of(gw, fam.other_exec)}, as_json, **alice)
    assert r.json() == {"revoked": 1}
    assert alive(gw, fam) == {"bobs"}
    # An admin revokes anyone's.
    r = revoke(gw, {"jti": jti_of(gw, fam.bobs)}, as_json, apikey=gw.key)
    assert r.json() == {"revoked": 1}
    assert alive(gw, fam) == set()


@pytest.mark.parametrize("as_json", BODY_KINDS)
def test_holding_a_token_is_enough_to_revoke_it(gw_db: Running, as_json: bool) -> None:
    gw = gw_db
    fam = family(gw)
    r = revoke(gw, {"token": fam.child}, as_json)  # no credential at all (RFC 7009)
    assert r.status_code == 200 and r.json() == {"revoked": 2}, r.text  # and its child
    assert alive(gw, fam) == set(fam.all()) - {"child", "grandchild"}
    # An invalid token revokes nothing and is no error (RFC 7009).
    for junk in ("not-a-token", fam.root[:-4] + "AAAA"):
        assert revoke(gw, {"token": junk}, as_json).json() == {"revoked": 0}
    assert alive(gw, fam) == set(fam.all()) - {"child", "grandchild"}


@pytest.mark.parametrize("as_json", BODY_KINDS)
def test_an_admins_token_is_a_token_not_an_admin(gw_db: Running, as_json: bool) -> None:
    """An admin's job holds a delegated token: it revokes only itself and its narrowings,
    like anyone's (the admin's power is their API key's)."""
    gw = gw_db
    fam = family(gw)
    admins = bearer(token(gw, gw.key, execution_id="exec-admin"))
    for body in (
        {"token": fam.bobs},
        {"jti": jti_of(gw, fam.bobs)},
        {"execution_id": "exec-1"},
        {"token": fam.alice, "token_type_hint": "api_key"},
    ):
        is_error(revoke(gw, body, as_json, **admins), 403, 40303)
    assert alive(gw, fam) == set(fam.all())
    assert status(gw, {"apikey": fam.alice}) == 200


def test_an_admin_revokes_an_execution_of_every_user(gw_db: Running) -> None:
    gw = gw_db
    fam = family(gw)
    r = revoke(gw, {"execution_id": "exec-1"}, True, apikey=gw.key)
    assert r.json() == {"revoked": 5}
    assert alive(gw, fam) == {"other_exec"}


def test_revoking_spends_no_use(gw_db: Running) -> None:
    gw = gw_db
    _, alice = gw.gateway.users.add_user("alice")
    parent = token(gw, alice, uses=2)
    child = narrow(gw, parent, uses=1)
    r = revoke(gw, {"token": child}, True, **bearer(parent))
    assert r.json() == {"revoked": 1}
    assert status(gw, bearer(parent)) == 200
    assert status(gw, bearer(parent)) == 200  # both uses were left
    assert status(gw, bearer(parent)) == 401
    # An exhausted token can still revoke itself.
    r = revoke(gw, {"token": parent}, True, **bearer(parent))
    assert r.status_code == 200 and r.json() == {"revoked": 1}, r.text


def test_an_execution_id_with_a_newline_is_refused_everywhere(gw_db: Running) -> None:
    gw = gw_db
    _, alice = gw.gateway.users.add_user("alice")
    ok = token(gw, alice, execution_id="exec-9")
    for bad in ("exec-9\n", "exec-9\r\n", "exec 9", "exec-9\x00"):
        r = httpx.post(
            gw.api + "/token",
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": alice,
                "subject_token_type": "urn:fedgate:params:oauth:token-type:api-key",
                "scope": "storage.read:/local",
                "execution_id": bad,
            },
        )
        is_error(r, 400, 40007)
        for as_json in (True, False):
            is_error(revoke(gw, {"execution_id": bad}, as_json, apikey=alice), 400, 40007)
    assert status(gw, bearer(ok)) == 200
    assert revoke(gw, {"execution_id": "exec-9"}, False, apikey=alice).json() == {"revoked": 1}
    assert status(gw, bearer(ok)) == 401
