from __future__ import annotations

import datetime as dt
import time

import pytest

import tokens.users
from tests.clock import FakeClock
from tokens.errors import AlreadyExistsError, NotFoundError
from tokens.store import Store
from tokens.users import User, UserService


def test_add_and_authenticate_key(store: Store) -> None:
    users = UserService(store)
    user, key = users.add_user("alice", admin=True)
    assert user == User("alice", True)
    assert key.startswith("fgk_")
    assert users.authenticate_key(key) == User("alice", True)
    assert users.count() == 1
    assert users.list_users() == [User("alice", True)]
    assert users.get_user("alice") == User("alice", True)
    assert users.get_user("nobody") is None


def test_duplicate_user(store: Store) -> None:
    users = UserService(store)
    users.add_user("alice")
    with pytest.raises(AlreadyExistsError):
        users.add_user("alice")
    assert users.count() == 1


@pytest.mark.parametrize("name", ["", "-x", "a b", "a/b", "x" * 65, "é"])
def test_bad_user_names(store: Store, name: str) -> None:
    with pytest.raises(ValueError):
        UserService(store).add_user(name)


def test_keys_stored_hashed(store: Store) -> None:
    users = UserService(store)
    _, key = users.add_user("alice")
    secret = key.split("_", 2)[2]
    with store.transaction(write=False) as tx:
        rows = tx.query("SELECT * FROM api_keys")
    assert rows and secret not in repr(rows)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "fgk_",
        "fgk_zz_abc",
        "nope",
        "fgk_0123456789abcdef_",
        "x" * 5000,
        "fgk_0123456789abcdef_" + "A" * 43,
    ],
)
def test_malformed_or_unknown_keys(store: Store, bad: str) -> None:
    users = UserService(store)
    users.add_user("alice")
    assert users.authenticate_key(bad) is None


def test_wrong_secret_with_right_id(store: Store) -> None:
    users = UserService(store)
    _, key = users.add_user("alice")
    prefix, kid, secret = key.split("_", 2)
    forged = f"{prefix}_{kid}_{'A' * len(secret)}"
    assert users.authenticate_key(forged) is None
    assert users.authenticate_key(key) is not None


def test_new_key_label_ttl_and_revoke(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock().install(monkeypatch, tokens.users)
    users = UserService(store, cache_ttl=0)
    _, k1 = users.add_user("bob")
    k2 = users.new_api_key("bob", label="laptop")
    k3 = users.new_api_key("bob", ttl=dt.timedelta(seconds=30))
    assert all(users.authenticate_key(k) == User("bob") for k in (k1, k2, k3))
    labels = [k.label for k in users.list_keys("bob")]
    assert "laptop" in labels and len(labels) == 3
    clock.advance(29)
    assert users.authenticate_key(k3) == User("bob")
    clock.advance(1)  # its expiry: a key is valid strictly before it
    assert users.authenticate_key(k3) is None
    assert users.revoke_keys("bob") == 3
    assert users.authenticate_key(k1) is None
    assert users.authenticate_key(k2) is None
    with pytest.raises(NotFoundError):
        users.new_api_key("nobody")


def test_revoke_one_key(store: Store) -> None:
    users = UserService(store)
    _, k1 = users.add_user("bob")
    k2 = users.new_api_key("bob")
    assert users.revoke_key("bob", k1.split("_")[1])
    assert users.authenticate_key(k1) is None
    assert users.authenticate_key(k2) == User("bob")


def test_revocation_seen_by_other_process_after_cache_ttl(db_url: str, store: Store) -> None:
    a = UserService(store, cache_ttl=0.3)
    other = Store.open(db_url)
    try:
        b = UserService(other, cache_ttl=0.3)
        _, key = a.add_user("carol")
        assert b.authenticate_key(key) == User("carol")
        a.revoke_keys("carol")
        assert a.authenticate_key(key) is None  # own cache cleared at once
        time.sleep(0.35)
        assert b.authenticate_key(key) is None
    finally:
        other.close()


def test_delete_user(store: Store) -> None:
    users = UserService(store)
    _, key = users.add_user("dave", password="pw-dave")
    assert users.delete_user("dave")
    assert not users.delete_user("dave")
    assert users.authenticate_key(key) is None
    assert users.authenticate_password("dave", "pw-dave") is None
    assert users.count() == 0


def test_passwords(store: Store) -> None:
    users = UserService(store)
    users.add_user("erin", password="correct horse")
    users.add_user("frank")  # no password: password login impossible
    assert users.authenticate_password("erin", "correct horse") == User("erin")
    assert users.authenticate_password("erin", "wrong") is None
    assert users.authenticate_password("frank", "") is None
    assert users.authenticate_password("nobody", "correct horse") is None
    assert users.authenticate_password("bad name!", "x") is None
    users.set_password("erin", "battery staple")
    assert users.authenticate_password("erin", "correct horse") is None
    assert users.authenticate_password("erin", "battery staple") == User("erin")
    with pytest.raises(NotFoundError):
        users.set_password("nobody", "x")
    with store.transaction(write=False) as tx:
        rows = tx.query("SELECT password_hash FROM users WHERE name = 'erin'")
    assert "battery" not in rows[0][0] and rows[0][0].startswith("scrypt$")


def test_unknown_user_costs_as_much_as_wrong_password(store: Store) -> None:
    users = UserService(store)
    users.add_user("gina", password="pw")

    def timed(name: str) -> float:
        t = time.perf_counter()
        for _ in range(3):
            users.authenticate_password(name, "guess")
        return time.perf_counter() - t

    known, unknown = timed("gina"), timed("nobody")
    assert unknown > 0.5 * known  # both pay for scrypt


def test_set_admin(store: Store) -> None:
    users = UserService(store)
    _, key = users.add_user("hal")
    users.set_admin("hal", True)
    assert users.authenticate_key(key) == User("hal", True)
    with pytest.raises(NotFoundError):
        users.set_admin("nobody", True)


def test_key_check_is_fast_when_hot(store: Store) -> None:
    users = UserService(store)
    _, key = users.add_user("ivy")
    users.authenticate_key(key)
    n = 20_000
    t = time.perf_counter()
    for _ in range(n):
        users.authenticate_key(key)
    rate = n / (time.perf_counter() - t)
    assert rate > 20_000, rate


def test_password_hash_format_and_foreign_hashes() -> None:
    """The stored form is ``scrypt$N$r$p$<16-byte salt>$<32-byte digest>`` (base64);
    a hash of another length (an import, a later default) still verifies; anything that
    is not a readable scrypt hash never does, whatever the password."""
    import base64
    import hashlib

    stored = tokens.users.hash_password("pw")
    algo, n, r, p, salt, digest = stored.split("$")
    assert (algo, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt)) == 16 and len(base64.b64decode(digest)) == 32
    assert tokens.users.verify_password("pw", stored)
    assert not tokens.users.verify_password("pW", stored)
    long_digest = hashlib.scrypt(b"pw", salt=b"0" * 16, n=1024, r=8, p=1, dklen=64)
    foreign = "$".join(
        ["scrypt", "1024", "8", "1", base64.b64encode(b"0" * 16).decode(),
         base64.b64encode(long_digest).decode()]
    )  # fmt: skip
    assert tokens.users.verify_password("pw", foreign)
    for bad in ("", "garbage", "bcrypt$16384$8$1$AAAA$AAAA", "scrypt$x$8$1$AAAA$AAAA",
                "scrypt$16384$8$1$!!$AAAA", stored.replace("scrypt", "sha256", 1)):  # fmt: skip
        assert not tokens.users.verify_password("pw", bad), bad


def test_password_edges(store: Store) -> None:
    users = UserService(store)
    users.add_user("alice", password="x" * 1024, admin=True)  # the longest there may be
    assert users.authenticate_password("alice", "x" * 1024) == User("alice", True)
    assert users.authenticate_password("alice", "x" * 1025) is None
    # A JSON body can carry a lone surrogate: it is a password like any other.
    users.set_password("alice", "pw\udc80")
    assert users.authenticate_password("alice", "pw\udc80") == User("alice", True)
    assert users.authenticate_password("alice", "pw") is None
    for bad in ("", "x" * 1025, None):
        with pytest.raises(ValueError, match=r"^password must be 1-1024 characters$"):
            users.set_password("alice", bad)  # type: ignore[arg-type]
    # Wrong types are refused, not crashed on.
    assert users.authenticate_password(5, "pw") is None  # type: ignore[arg-type]
    assert users.authenticate_password("alice", 5) is None  # type: ignore[arg-type]
    assert users.authenticate_password("bad name!", "pw") is None
    with pytest.raises(NotFoundError, match=r"^no user 'bob'$"):
        users.set_password("bob", "pw")
    with pytest.raises(NotFoundError, match=r"^no user 'bob'$"):
        users.set_admin("bob", True)
    with pytest.raises(NotFoundError, match=r"^no user 'bob'$"):
        users.new_api_key("bob")


def test_key_info_fields(store: Store) -> None:
    users = UserService(store)
    _, first = users.add_user("alice")
    key = users.new_api_key("alice", ttl=dt.timedelta(hours=2))
    unlabelled = users.new_api_key("alice")
    long = users.new_api_key("alice", label="L" * 300)
    infos = {i.id: i for i in users.list_keys("alice")}
    by_key = {k: infos[k.split("_")[1]] for k in (first, key, unlabelled, long)}
    assert by_key[first].label == "initial" and by_key[first].expires is None
    timed = by_key[key]
    assert isinstance(timed.created, float) and timed.expires is not None
    assert timed.expires - timed.created == pytest.approx(7200)
    assert timed.last_used is None and timed.user == "alice"
    assert by_key[unlabelled].label == ""
    assert by_key[long].label == "L" * 200
    assert users.get_key(timed.id) == timed
    assert users.find_key(key) == timed
    users.authenticate_key(key)  # records its first use
    used = users.get_key(timed.id)
    assert used is not None and used.last_used is not None
    assert used.expires == timed.expires and used.created == timed.created
    # Unknown, malformed, or not a string at all: None, never a crash.
    for bad in ("0" * 16, "XYZ", 5, None):
        assert users.get_key(bad) is None  # type: ignore[arg-type]
        assert users.find_key(bad) is None  # type: ignore[arg-type]
    assert not users.revoke_key("alice", "0" * 16)
    assert users.revoke_key("alice", timed.id)
    assert not users.revoke_key("alice", timed.id)


def test_is_api_key_checks_the_form_only() -> None:
    key = "fgk_0123456789abcdef_" + "A" * 20
    assert tokens.users.is_api_key(key)
    for bad in (key + "\n", key[:-1], "fgk_0123456789abcdeF_" + "A" * 20, "", None, 5):
        assert not tokens.users.is_api_key(bad), bad  # type: ignore[arg-type]
