"""Per-user credentials for each storage, encrypted at rest.

Each credential is serialised to JSON and sealed with AES-256-GCM under the current
master key (fresh random nonce each time). The associated data binds the ciphertext
to its user, its storage id and its master key id, so a row copied onto another user
or storage in the database fails to decrypt instead of leaking a credential.

The vault keeps its own record type, ``StoredCredential`` (a kind and named string
parts): it seals them without interpreting them, and knows nothing of the storage
adapters. The gateway turns a record into the adapters' ``Credential`` where it glues
the two (docs/decisions.md, "Where the credential type lives").
"""

from __future__ import annotations

import builtins
import json
import time
from dataclasses import dataclass, field

from .errors import VaultError
from .masterkey import MasterKeys, native_grant_aad, signing_key_aad, vault_aad
from .store import Store

_MAX_STORAGE_ID = 200
_MAX_CREDENTIAL = 64 * 1024
# Every table holding ciphertexts under the master keyring, with its key id column.
_WRAPPED_TABLES = ("vault", "signing_keys", "native_grants")


def wrapped_key_usage(store: Store) -> dict[str, int]:
    """How many stored ciphertexts each master key id wraps (key ids are not secret).

    Empty means the state holds no secret at all: the only state on which a gateway may
    create a new master key without making something unreadable."""
    usage: dict[str, int] = {}
    with store.reading() as tx:
        for table in _WRAPPED_TABLES:
            rows = tx.query(f"SELECT key_id, COUNT(*) FROM {table} GROUP BY key_id")  # noqa: S608
            for key_id, n in rows:
                usage[str(key_id)] = usage.get(str(key_id), 0) + int(n)
    return usage


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A user's credential for one storage as the vault seals and returns it.

    ``kind`` names the shape (``"apikey"``, ``"access_secret"``...) and ``fields`` its
    parts; the vault checks only that both are strings. ``repr`` hides the values so a
    record never reaches a log by accident.
    """

    kind: str
    fields: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"StoredCredential(kind={self.kind!r}, fields=<{len(self.fields)} hidden>)"

    __str__ = __repr__


@dataclass(frozen=True)
class StoredKeyInfo:
    """What may be shown about a stored credential: never the secret itself."""

    storage_id: str
    kind: str
    created: float  # epoch seconds
    updated: float
    key_id: str  # the id of the master key that encrypts it (not secret)


def _check_ids(user: str, storage_id: str) -> None:
    if not user or not isinstance(user, str):
        raise ValueError("user must be a non-empty string")
    if (
        not isinstance(storage_id, str)
        or not storage_id
        or len(storage_id) > _MAX_STORAGE_ID
        or "\0" in storage_id
    ):
        raise ValueError(f"storage id must be 1-{_MAX_STORAGE_ID} characters, without NUL")


def _serialise(credential: StoredCredential) -> bytes:
    if not isinstance(credential.kind, str) or not credential.kind:
        raise ValueError("credential kind must be a non-empty string")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in credential.fields.items()):
        raise ValueError("credential fields must map strings to strings")
    data = json.dumps({"kind": credential.kind, "fields": credential.fields}).encode()
    if len(data) > _MAX_CREDENTIAL:
        raise ValueError("credential is too large")
    return data


class KeyVault:
    """Encrypted credentials in the store; thread-safe."""

    def __init__(self, store: Store, keys: MasterKeys) -> None:
        self._store = store
        self._keys = keys

    @property
    def keys(self) -> MasterKeys:
        return self._keys

    def put(self, user: str, storage_id: str, credential: StoredCredential) -> None:
        """Store (or replace) ``user``'s credential for ``storage_id``."""
        _check_ids(user, storage_id)
        key_id, blob = self._keys.encrypt(_serialise(credential), vault_aad(user, storage_id))
        now = time.time()
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO vault (user_name, storage_id, kind, key_id, ciphertext, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (user_name, storage_id) DO UPDATE SET kind = excluded.kind, "
                "key_id = excluded.key_id, ciphertext = excluded.ciphertext, "
                "updated = excluded.updated",
                (user, storage_id, credential.kind, key_id, blob, now, now),
            )

    def get(self, user: str, storage_id: str) -> StoredCredential | None:
        """The decrypted credential, None if there is none; VaultError if it cannot be read."""
        with self._store.reading() as tx:
            row = tx.query_one(
                "SELECT key_id, ciphertext FROM vault WHERE user_name = ? AND storage_id = ?",
                (user, storage_id),
            )
        if row is None:
            return None
        what = f"the credential of user {user!r} for storage {storage_id!r}"
        plain = self._keys.decrypt(row[0], row[1], vault_aad(user, storage_id), what)
        try:
            data = json.loads(plain)
            return StoredCredential(kind=str(data["kind"]), fields=dict(data["fields"]))
        except (ValueError, KeyError, TypeError) as e:
            raise VaultError(f"{what} is not a valid credential record") from e

    def list(self, user: str) -> builtins.list[StoredKeyInfo]:
        with self._store.reading() as tx:
            rows = tx.query(
                "SELECT storage_id, kind, created, updated, key_id FROM vault "
                "WHERE user_name = ? ORDER BY storage_id",
                (user,),
            )
        return [StoredKeyInfo(r[0], r[1], float(r[2]), float(r[3]), r[4]) for r in rows]

    def delete(self, user: str, storage_id: str) -> bool:
        """Forget a credential. Call ``TokenService.revoke_for_storage`` too (cascade)."""
        with self._store.transaction() as tx:
            n = tx.execute(
                "DELETE FROM vault WHERE user_name = ? AND storage_id = ?", (user, storage_id)
            )
        return n > 0

    def rotate(self, new_keys: MasterKeys) -> int:
        """Re-encrypt every stored secret under ``new_keys``' current key.

        Covers the vault, the token signing keys and the native grants, in one
        transaction: either all are re-wrapped or none. Ciphertexts may be under any key
        of the current or the new keyring. Returns the number of ciphertexts re-wrapped.
        Afterwards this vault uses ``new_keys``; other processes need ``new_keys`` (or a
        key file that holds it) before old keys are dropped.
        """
        reader = new_keys.merged(self._keys)
        count = 0
        with self._store.transaction() as tx:
            if self._store.is_postgres:  # SQLite's BEGIN IMMEDIATE already excludes writers
                tx.execute("LOCK TABLE vault, signing_keys, native_grants IN EXCLUSIVE MODE")
            rows = tx.query("SELECT user_name, storage_id, key_id, ciphertext FROM vault")
            for user, storage_id, key_id, blob in rows:
                aad = vault_aad(user, storage_id)
                what = f"the credential of user {user!r} for storage {storage_id!r}"
                plain = reader.decrypt(key_id, blob, aad, what)
                new_id, new_blob = new_keys.encrypt(plain, aad)
                tx.execute(
                    "UPDATE vault SET key_id = ?, ciphertext = ? "
                    "WHERE user_name = ? AND storage_id = ?",
                    (new_id, new_blob, user, storage_id),
                )
                count += 1
            rows = tx.query("SELECT kid, key_id, private_enc FROM signing_keys")
            for kid, key_id, blob in rows:
                aad = signing_key_aad(kid)
                plain = reader.decrypt(key_id, blob, aad, f"signing key {kid}")
                new_id, new_blob = new_keys.encrypt(plain, aad)
                tx.execute(
                    "UPDATE signing_keys SET key_id = ?, private_enc = ? WHERE kid = ?",
                    (new_id, new_blob, kid),
                )
                count += 1
            rows = tx.query("SELECT id, jti, mount, key_id, secret FROM native_grants")
            for row_id, jti, mount, key_id, blob in rows:
                aad = native_grant_aad(jti, mount)
                plain = reader.decrypt(key_id, blob, aad, "a native grant")
                new_id, new_blob = new_keys.encrypt(plain, aad)
                tx.execute(
                    "UPDATE native_grants SET key_id = ?, secret = ? WHERE id = ?",
                    (new_id, new_blob, row_id),
                )
                count += 1
        self._keys = new_keys
        return count
