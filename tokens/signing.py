"""The ES256 keys that sign fedgate tokens, shared by every replica through the store.

Private keys are stored encrypted under the master keyring, so replicas sign with the
same keys and a database dump alone cannot mint tokens. The newest non-superseded key
signs; after a rotation the previous key is *superseded* but still verifies (and is
still published in the JWKS) for ``retire_after`` seconds — the longest a token it
signed can live — and is deleted after that.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from joserfc.jwk import ECKey

from .masterkey import MasterKeys, signing_key_aad
from .store import Store, Tx

ALG = "ES256"
# Replicas pick up a key rotated elsewhere within this many seconds (and at once when
# they meet an unknown kid).
_REFRESH_S = 5.0
_UNKNOWN_KID_REFRESH_S = 1.0
_CREATE_LOCK = 0x66656468  # advisory lock id: one replica creates the first key


@dataclass(frozen=True)
class _Key:
    kid: str
    private: ECKey
    public: ECKey
    created: float
    superseded: float | None


class SigningKeys:
    """The loaded signing keys; thread-safe."""

    def __init__(self, store: Store, keys: MasterKeys, retire_after: float) -> None:
        self._store = store
        self._master = keys
        self._retire_after = retire_after
        self._keys: dict[str, _Key] = {}
        self._current: _Key | None = None
        self._loaded_at = -1e18
        self._lock = threading.Lock()

    def current(self) -> tuple[str, ECKey]:
        """The kid and private key to sign with (created on first use)."""
        if time.monotonic() - self._loaded_at > _REFRESH_S or self._current is None:
            self._reload(create=True)
        key = self._current
        assert key is not None
        return key.kid, key.private

    def verification_key(self, kid: str) -> ECKey | None:
        """The public key for ``kid`` if it may still verify, else None."""
        key = self._keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at > _UNKNOWN_KID_REFRESH_S:
            self._reload(create=False)
            key = self._keys.get(kid)
        if key is None or not self._usable(key, time.time()):
            return None
        return key.public

    def rotate(self) -> str:
        """Create a new current key, supersede the others; returns the new kid."""
        with self._store.transaction() as tx:
            kid = self._insert_new(tx)
            now = time.time()
            tx.execute(
                "UPDATE signing_keys SET superseded = ? WHERE superseded IS NULL AND kid <> ?",
                (now, kid),
            )
            tx.execute(
                "DELETE FROM signing_keys WHERE superseded IS NOT NULL AND superseded < ?",
                (now - self._retire_after,),
            )
        self._reload(create=False)
        return kid

    def jwks(self) -> dict[str, Any]:
        self.current()
        now = time.time()
        keys = [
            {**k.public.as_dict(private=False), "kid": k.kid, "alg": ALG, "use": "sig"}
            for k in sorted(self._keys.values(), key=lambda k: -k.created)
            if self._usable(k, now)
        ]
        return {"keys": keys}

    # -- internals ---------------------------------------------------------------------

    def _usable(self, key: _Key, now: float) -> bool:
        return key.superseded is None or now < key.superseded + self._retire_after

    def _insert_new(self, tx: Tx) -> str:
        private = ECKey.generate_key("P-256", private=True)
        kid = private.thumbprint()[:16]
        pem = private.as_pem(private=True)
        key_id, blob = self._master.encrypt(pem, signing_key_aad(kid))
        public = json.dumps(private.as_dict(private=False))
        tx.execute(
            "INSERT INTO signing_keys (kid, alg, public_jwk, key_id, private_enc, created, "
            "superseded) VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (kid, ALG, public, key_id, blob, time.time()),
        )
        return kid

    def _reload(self, create: bool) -> None:
        asked = time.monotonic()
        with self._lock:
            if self._loaded_at > asked and (self._current is not None or not create):
                return  # another thread reloaded while this one waited for the lock
            rows = self._load_rows()
            if create and not any(r[4] is None for r in rows):
                with self._store.transaction() as tx:
                    if self._store.is_postgres:
                        tx.query("SELECT pg_advisory_xact_lock(?)", (_CREATE_LOCK,))
                    live = tx.query_one(
                        "SELECT COUNT(*) FROM signing_keys WHERE superseded IS NULL"
                    )
                    if not live or not live[0]:
                        self._insert_new(tx)
                rows = self._load_rows()
            loaded: dict[str, _Key] = {}
            for kid, key_id, blob, created, superseded in rows:
                old = self._keys.get(kid)
                if old is not None:
                    loaded[kid] = _Key(kid, old.private, old.public, old.created, superseded)
                    continue
                pem = self._master.decrypt(key_id, blob, signing_key_aad(kid), f"signing key {kid}")
                private = ECKey.import_key(pem)
                public = ECKey.import_key(private.as_dict(private=False))
                loaded[kid] = _Key(kid, private, public, float(created), superseded)
            self._keys = loaded
            live_keys = [k for k in loaded.values() if k.superseded is None]
            if live_keys:
                self._current = max(live_keys, key=lambda k: (k.created, k.kid))
            elif create:
                raise RuntimeError("no signing key after creating one")  # pragma: no cover
            self._loaded_at = time.monotonic()

    def _load_rows(self) -> list[tuple[str, str, bytes, float, float | None]]:
        with self._store.reading() as tx:
            rows = tx.query(
                "SELECT kid, key_id, private_enc, created, superseded FROM signing_keys"
            )
        return [(r[0], r[1], bytes(r[2]), float(r[3]), r[4]) for r in rows]
