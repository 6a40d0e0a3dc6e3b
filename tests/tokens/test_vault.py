from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tokens import masterkey
from tokens.errors import MissingMasterKeyError, VaultError
from tokens.masterkey import MasterKeys, native_grant_aad, signing_key_aad, vault_aad
from tokens.store import Store, Tx
from tokens.vault import KeyVault, StoredCredential, wrapped_key_usage

SECRET = "s3cr3t-PLAINTEXT-marker-7f1e"


def cred(secret: str = SECRET) -> StoredCredential:
    return StoredCredential("access_secret", {"accessKey": "AKIAEXAMPLE", "secretKey": secret})


def keys(*raw: str) -> MasterKeys:
    return MasterKeys.parse(",".join(raw))


K1, K2, K3 = MasterKeys.generate(), MasterKeys.generate(), MasterKeys.generate()


def seal_signing_key(tx: Tx, ring: MasterKeys, kid: str) -> None:
    """A signing key's row as TokenService stores it, sealed under ``ring``."""
    key_id, blob = ring.encrypt(b"private", signing_key_aad(kid))
    tx.execute(
        "INSERT INTO signing_keys (kid, alg, public_jwk, key_id, private_enc, created) "
        "VALUES (?, 'ES256', '{}', ?, ?, 0)",
        (kid, key_id, blob),
    )


def seal_grant(tx: Tx, ring: MasterKeys, jti: str, mount: str, secret: bytes) -> None:
    """A native grant's row as the gateway stores it, sealed under ``ring``."""
    key_id, blob = ring.encrypt(secret, native_grant_aad(jti, mount))
    tx.execute(
        "INSERT INTO native_grants (jti, user_name, mount, kind, key_id, secret, created, "
        "expires) VALUES (?, 'alice', ?, 'ticket', ?, ?, 0, 9e9)",
        (jti, mount, key_id, blob),
    )


def test_round_trip_upsert_list_delete(store: Store) -> None:
    v = KeyVault(store, keys(K1))
    assert v.get("alice", "s3") is None
    v.put("alice", "s3", cred())
    assert v.get("alice", "s3") == cred()
    v.put("alice", "s3", StoredCredential("apikey", {"apiKey": "k2"}))
    assert v.get("alice", "s3") == StoredCredential("apikey", {"apiKey": "k2"})
    v.put("alice", "girder", StoredCredential("apikey", {"apiKey": "k3"}))
    v.put("bob", "s3", cred())
    infos = v.list("alice")
    assert [(i.storage_id, i.kind) for i in infos] == [("girder", "apikey"), ("s3", "apikey")]
    assert infos[1].updated >= infos[1].created
    assert "k2" not in repr(infos)
    assert v.delete("alice", "s3")
    assert not v.delete("alice", "s3")
    assert v.get("alice", "s3") is None
    assert v.get("bob", "s3") == cred()


def test_bad_input(store: Store) -> None:
    v = KeyVault(store, keys(K1))
    with pytest.raises(ValueError):
        v.put("alice", "", cred())
    with pytest.raises(ValueError):
        v.put("alice", "x" * 201, cred())
    with pytest.raises(ValueError):
        v.put("alice", "s3", StoredCredential("", {}))
    with pytest.raises(ValueError):
        v.put("alice", "s3", StoredCredential("apikey", {"apiKey": 3}))  # type: ignore[dict-item]


def _pg_dump(store_url: str) -> bytes:
    pg_bin = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))[-1]
    schema = store_url.split("search_path%3D")[1]
    out = subprocess.run(
        [str(pg_bin), "-h", "127.0.0.1", "-p", "55432", "-U", "postgres", "-n", schema, "fedgate"],
        check=True,
        capture_output=True,
    )
    return out.stdout


def test_secret_not_in_plaintext_at_rest(db_url: str, store: Store, tmp_path: Path) -> None:
    v = KeyVault(store, keys(K1))
    v.put("alice", "s3", cred())
    v.put("bob", "girder", StoredCredential("apikey", {"apiKey": SECRET + "-girder"}))
    assert v.get("alice", "s3") == cred()
    if store.is_postgres:
        dump = _pg_dump(db_url)
        assert b"COPY" in dump and b"vault" in dump  # the dump does hold the table
        assert b"alice" in dump
    else:
        files = [p for p in tmp_path.iterdir() if p.name.startswith("state.db")]
        assert any(p.name.endswith("-wal") for p in files)
        dump = b"".join(p.read_bytes() for p in files)
        assert b"alice" in dump
    assert SECRET.encode() not in dump
    assert SECRET.encode("utf-16-le") not in dump
    assert K1.encode() not in dump


def test_rotation_survives_restart(db_url: str, store: Store) -> None:
    v = KeyVault(store, keys(K1))
    v.put("alice", "s3", cred())
    v.put("bob", "girder", StoredCredential("apikey", {"apiKey": "bobkey"}))
    new = keys(K2, K1)
    assert v.rotate(new) == 2
    assert v.keys.current_id == new.current_id
    assert {i.key_id for i in v.list("alice")} == {new.current_id}
    store.close()
    # A restart that only knows the new key.
    s2 = Store.open(db_url)
    try:
        v2 = KeyVault(s2, keys(K2))
        assert v2.get("alice", "s3") == cred()
        assert v2.get("bob", "girder") == StoredCredential("apikey", {"apiKey": "bobkey"})
        # Rotating again with a keyring that no longer contains K1 still works.
        assert v2.rotate(keys(K3)) == 2
        assert KeyVault(s2, keys(K3)).get("alice", "s3") == cred()
        with pytest.raises(VaultError):
            KeyVault(s2, keys(K2)).get("alice", "s3")
    finally:
        s2.close()


def test_wrong_master_key(store: Store) -> None:
    KeyVault(store, keys(K1)).put("alice", "s3", cred())
    with pytest.raises(VaultError) as ei:
        KeyVault(store, keys(K2)).get("alice", "s3")
    msg = str(ei.value)
    assert "which is not in the keyring" in msg and "FEDGATE_MASTER_KEY_FILE" in msg
    assert SECRET not in msg and K1 not in msg and K2 not in msg
    # Same key id but tampered ciphertext.
    with store.transaction() as tx:
        (blob,) = tx.query_one("SELECT ciphertext FROM vault") or (b"",)
        blob = bytes(blob)
        tampered = blob[:-1] + bytes([blob[-1] ^ 1])
        tx.execute("UPDATE vault SET ciphertext = ?", (tampered,))
    with pytest.raises(VaultError, match="wrong or the stored data was altered"):
        KeyVault(store, keys(K1)).get("alice", "s3")


def test_failed_rotation_changes_nothing(store: Store) -> None:
    KeyVault(store, keys(K1)).put("alice", "s3", cred())
    KeyVault(store, keys(K2)).put("bob", "s3", cred())
    v = KeyVault(store, keys(K1))  # cannot read bob's row
    with pytest.raises(VaultError):
        v.rotate(keys(K3))
    assert v.get("alice", "s3") == cred()
    assert KeyVault(store, keys(K2)).get("bob", "s3") == cred()


def test_row_moved_to_other_user_does_not_decrypt(store: Store) -> None:
    v = KeyVault(store, keys(K1))
    v.put("alice", "s3", cred())
    with store.transaction() as tx:
        tx.execute("UPDATE vault SET user_name = 'mallory'")
    with pytest.raises(VaultError):
        v.get("mallory", "s3")


def test_masterkeys_load_env_and_files(tmp_path: Path) -> None:
    assert MasterKeys.load({"FEDGATE_MASTER_KEY": f"{K1}, {K2}"}, None).ids == [
        keys(K1).current_id,
        keys(K2).current_id,
    ]
    f = tmp_path / "mk"
    f.write_text(f"# current first\n{K2}\n{K1}\n")
    loaded = MasterKeys.load({"FEDGATE_MASTER_KEY_FILE": str(f)}, tmp_path / "unused")
    assert loaded.current_id == keys(K2).current_id
    assert not (tmp_path / "unused").exists()
    with pytest.raises(VaultError, match="cannot read"):
        MasterKeys.load({"FEDGATE_MASTER_KEY_FILE": str(tmp_path / "missing")}, None)
    with pytest.raises(VaultError, match="no master key"):
        MasterKeys.load({}, None)


def test_masterkeys_default_file_created_once(tmp_path: Path) -> None:
    default = tmp_path / "state" / "master.key"
    a = MasterKeys.load({}, default)
    assert stat.S_IMODE(os.stat(default).st_mode) == 0o600
    b = MasterKeys.load({}, default)
    assert a.ids == b.ids
    assert [p.name for p in default.parent.iterdir()] == ["master.key"]


@pytest.mark.parametrize("bad", ["", "not-base64!!", "c2hvcnQ=", K1 + "AAAA"])
def test_bad_master_key_message_hides_value(bad: str) -> None:
    with pytest.raises(VaultError) as ei:
        MasterKeys.load({"FEDGATE_MASTER_KEY": f"{K1},{bad}" if bad else ","}, None)
    if bad:
        assert bad not in str(ei.value) and K1 not in str(ei.value)
    assert K1 not in repr(keys(K1))


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_keyring_follows_its_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    f = tmp_path / "master-key"
    f.write_text(K1 + "\n")
    writer = MasterKeys.load({"FEDGATE_MASTER_KEY_FILE": str(f)}, None)
    reader = MasterKeys.load({"FEDGATE_MASTER_KEY_FILE": str(f)}, None)
    assert writer.path == f and "FEDGATE_MASTER_KEY_FILE" in writer.source
    _replace(f, f"{K2}\n{K1}\n")
    # Encrypting looks at the file first: the new current key seals.
    kid, blob = writer.encrypt(b"payload", b"aad")
    assert kid == keys(K2).current_id
    # A ciphertext under a key id not loaded makes the reader look once.
    assert reader.ids == [keys(K1).current_id]
    assert reader.decrypt(kid, blob, b"aad") == b"payload"
    assert reader.ids == [keys(K2).current_id, keys(K1).current_id]
    # A file caught half-written keeps the loaded keys, and its content is not logged.
    _replace(f, K3[:20])
    with caplog.at_level("WARNING"):
        assert not reader.refresh()
    assert reader.decrypt(kid, blob, b"aad") == b"payload"
    assert "was not loaded" in caplog.text and K3[:20] not in caplog.text
    f.unlink()
    assert reader.decrypt(kid, blob, b"aad") == b"payload"
    # A key id nobody has: one look at the file, then the error naming where keys live.
    stranger_kid, stranger = keys(K3).encrypt(b"x", b"aad")
    f.write_text(K1 + "\n")
    with pytest.raises(MissingMasterKeyError) as ei:
        reader.decrypt(stranger_kid, stranger, b"aad")
    assert reader.ids == [keys(K1).current_id]  # it did look at the file
    assert stranger_kid in str(ei.value) and "FEDGATE_MASTER_KEY_FILE" in str(ei.value)
    assert K1 not in str(ei.value) and K3 not in str(ei.value)
    # A keyring from the environment has no file to follow.
    env_keys = MasterKeys.load({"FEDGATE_MASTER_KEY": K1}, None)
    assert env_keys.path is None and not env_keys.refresh()


def test_a_reload_by_another_thread_is_not_missed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests meet a ciphertext under a key not loaded yet: the first reloads the
    file, the second finds nothing new to load and must still use the reloaded ring
    (seen under load with two replicas as a 503 during a rotation)."""
    f = tmp_path / "master-key"
    f.write_text(K1 + "\n")
    reader = MasterKeys.load({"FEDGATE_MASTER_KEY_FILE": str(f)}, None)
    _replace(f, f"{K2}\n{K1}\n")
    kid, blob = keys(K2).encrypt(b"payload", b"aad")
    real_identity = masterkey._file_identity
    others: list[bool] = []

    def other_thread_reloads_first(path: Path) -> tuple[int, int, int, int] | None:
        if not others:
            monkeypatch.setattr(masterkey, "_file_identity", real_identity)
            others.append(reader.refresh())  # the other request's reload completes now
            monkeypatch.setattr(masterkey, "_file_identity", other_thread_reloads_first)
        return real_identity(path)

    monkeypatch.setattr(masterkey, "_file_identity", other_thread_reloads_first)
    assert reader.decrypt(kid, blob, b"aad") == b"payload"
    assert others == [True]


def test_default_file_is_not_made_when_not_allowed(tmp_path: Path) -> None:
    default = tmp_path / "master.key"
    with pytest.raises(MissingMasterKeyError, match="does not exist"):
        MasterKeys.load({}, default, create=False)
    assert not default.exists()


def test_rotation_rewraps_native_grants_and_usage_counts_every_table(store: Store) -> None:
    v = KeyVault(store, keys(K1))
    v.put("alice", "s3", cred())
    old = keys(K1)
    with store.transaction() as tx:
        seal_grant(tx, old, "jti-1", "irods", b'{"value": "ticket"}')
    assert wrapped_key_usage(store) == {old.current_id: 2}
    assert v.rotate(keys(K2)) == 2
    new_id = keys(K2).current_id
    assert wrapped_key_usage(store) == {new_id: 2}
    with store.reading() as tx:
        row = tx.query_one("SELECT key_id, secret FROM native_grants WHERE jti = 'jti-1'")
    assert row is not None
    plain = keys(K2).decrypt(row[0], bytes(row[1]), native_grant_aad("jti-1", "irods"))
    assert plain == b'{"value": "ticket"}'


def test_input_errors_say_what_is_wrong(store: Store) -> None:
    v = KeyVault(store, keys(K1))
    for user in ("", 5):
        with pytest.raises(ValueError, match=r"^user must be a non-empty string$"):
            v.put(user, "s3", cred())  # type: ignore[arg-type]
    for storage_id in ("", "x" * 201, "s\0", 7):
        with pytest.raises(ValueError, match=r"^storage id must be 1-200 characters, without NUL$"):
            v.put("alice", storage_id, cred())  # type: ignore[arg-type]
    v.put("alice", "x" * 200, cred())  # the longest storage id there may be
    assert v.get("alice", "x" * 200) == cred()
    with pytest.raises(ValueError, match=r"^credential kind must be a non-empty string$"):
        v.put("alice", "s3", StoredCredential("", {}))
    with pytest.raises(ValueError, match=r"^credential fields must map strings to strings$"):
        v.put("alice", "s3", StoredCredential("apikey", {"apiKey": 3}))  # type: ignore[dict-item]


def test_credential_size_limit_is_exact(store: Store) -> None:
    """64 KiB of serialised credential fits; one byte more is refused, nothing stored."""
    v = KeyVault(store, keys(K1))
    overhead = len(json.dumps({"kind": "apikey", "fields": {"apiKey": ""}}).encode())
    largest = StoredCredential("apikey", {"apiKey": "k" * (64 * 1024 - overhead)})
    v.put("alice", "s3", largest)
    assert v.get("alice", "s3") == largest
    too_large = StoredCredential("apikey", {"apiKey": "k" * (64 * 1024 - overhead + 1)})
    with pytest.raises(ValueError, match=r"^credential is too large$"):
        v.put("alice", "girder", too_large)
    assert v.get("alice", "girder") is None


def test_unreadable_records_are_named_in_the_error(store: Store) -> None:
    """An operator reading the error learns whose credential for which storage cannot be
    read (never its value), on a read and on a rotation."""
    KeyVault(store, keys(K1)).put("alice", "s3", cred())
    with pytest.raises(VaultError) as missing:
        KeyVault(store, keys(K2)).get("alice", "s3")
    assert str(missing.value).startswith("the credential of user 'alice' for storage 's3' ")
    with pytest.raises(VaultError) as rotating:
        KeyVault(store, keys(K2)).rotate(keys(K3))
    assert str(rotating.value).startswith("the credential of user 'alice' for storage 's3' ")
    # Decrypts, but is not a credential record.
    key_id, blob = keys(K1).encrypt(b"not json", vault_aad("alice", "girder"))
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO vault (user_name, storage_id, kind, key_id, ciphertext, created, "
            "updated) VALUES ('alice', 'girder', 'apikey', ?, ?, 0, 0)",
            (key_id, blob),
        )
    with pytest.raises(VaultError) as invalid:
        KeyVault(store, keys(K1)).get("alice", "girder")
    assert str(invalid.value) == (
        "the credential of user 'alice' for storage 'girder' is not a valid credential record"
    )


def test_rotation_names_an_unreadable_signing_key_or_grant(store: Store) -> None:
    with store.transaction() as tx:
        seal_signing_key(tx, keys(K2), "kid-7")
    with pytest.raises(VaultError, match=r"^signing key kid-7 is encrypted with master key"):
        KeyVault(store, keys(K1)).rotate(keys(K3))
    with store.transaction() as tx:
        tx.execute("DELETE FROM signing_keys")
    with store.transaction() as tx:
        seal_grant(tx, keys(K2), "jti-1", "irods", b"ticket")
    with pytest.raises(VaultError, match=r"^a native grant is encrypted with master key"):
        KeyVault(store, keys(K1)).rotate(keys(K3))


def test_rotation_counts_every_ciphertext_and_keeps_dates(store: Store) -> None:
    v = KeyVault(store, keys(K1))
    v.put("alice", "s3", cred())
    v.put("alice", "girder", StoredCredential("apikey", {"apiKey": "g"}))
    v.put("bob", "s3", cred())
    with store.transaction() as tx:  # created long ago, updated later
        tx.execute("UPDATE vault SET created = 1000, updated = 2000")
        for kid in ("kid-1", "kid-2"):  # and two signing keys
            seal_signing_key(tx, keys(K1), kid)
    assert v.rotate(keys(K2)) == 5
    assert [(i.storage_id, i.created, i.updated) for i in v.list("alice")] == [
        ("girder", 1000.0, 2000.0),
        ("s3", 1000.0, 2000.0),
    ]
    assert v.get("bob", "s3") == cred()
