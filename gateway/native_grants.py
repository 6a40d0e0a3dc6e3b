"""Native credentials handed out by ``/token/native``, remembered so revoking the fedgate
token also kills them (iRODS tickets, Girder tokens).

A grant row holds (token id, user, mount, kind, the credential encrypted like the key
vault, expiry). When ``TokenService`` reports a revocation — by token, by execution id,
of everything a storage key reached (``DELETE /user/externalKeys``) — the credentials of
every token it made invalid are deleted on their backend, acting as the user who minted
them (or the mount's service credential when the user's key is gone). A deletion that
fails (backend down) leaves the row marked revoked; ``sweep`` retries those, and drops
rows whose credential has expired on its own (deleting expired tickets too, which a real
iRODS keeps in its catalog). ``sweep`` runs at start-up, then once a minute in each
process (``sweep_forever``), and at most once a minute when a grant is recorded.

Only storages that are ``Revocable`` (adapters/base.py) get grants recorded: the others
hand out credentials that cannot be revoked (presigned URLs), which is why those live
``presign_lifetime`` seconds at most (gateway/api/redirects.py). A grant asked with an
API key has no token to be revoked with; it is recorded under a made-up id so the sweep deletes
it once expired. A Girder grant also records the id of the API key made for it
(``Delegation.revoke_ref``): deleting that key deletes the token.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from adapters.base import (
    Adapter,
    Delegation,
    NotFound,
    Revocable,
    Storage,
    StorageError,
    features,
)
from gateway.config import MountConfig, Settings
from gateway.errors import CarminError
from tokens.masterkey import MasterKeys, native_grant_aad
from tokens.revocation import Revocation
from tokens.service import TokenService
from tokens.store import Row, Store

log = logging.getLogger("fedgate.grants")

_SWEEP_EVERY_S = 60.0
_COLUMNS = "id, jti, user_name, mount, kind, key_id, secret, expires"


def _aad(jti: str, mount: str) -> bytes:
    return native_grant_aad(jti, mount)  # shared with KeyVault.rotate, which re-wraps grants


class MountAccess(Protocol):
    """What the grants need of the gateway's mounts (gateway/state.py's ``Mounts``):
    a mount by name, and a storage to delete a credential with."""

    @property
    def settings(self) -> Settings: ...

    def storage(self, mount: MountConfig, user: str) -> Storage: ...

    def adapter(self, mount: MountConfig) -> Adapter: ...


class NativeGrants:
    def __init__(
        self, store: Store, keys: MasterKeys, mounts: MountAccess, tokens: TokenService
    ) -> None:
        self._store = store
        self._keys = keys
        self._mounts = mounts
        self._swept_at = time.monotonic()
        self._sweep_lock = threading.Lock()
        tokens.on_revoke(self.on_revoke)

    def record(self, jti: str, user: str, mount: str, delegation: Delegation) -> None:
        secret = json.dumps(
            {"value": delegation.value, "headers": delegation.headers, "ref": delegation.revoke_ref}
        )
        key_id, blob = self._keys.encrypt(secret.encode(), _aad(jti, mount))
        now = time.time()
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO native_grants (jti, user_name, mount, kind, key_id, secret, "
                "created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    jti,
                    user,
                    mount,
                    delegation.kind,
                    key_id,
                    blob,
                    now,
                    delegation.expires_at.timestamp(),
                ),
            )
        if time.monotonic() - self._swept_at > _SWEEP_EVERY_S:
            self.sweep()

    def count(self, jti: str) -> int:
        with self._store.reading() as tx:
            row = tx.query_one("SELECT COUNT(*) FROM native_grants WHERE jti = ?", (jti,))
        return int(row[0]) if row else 0

    # -- revocation ----------------------------------------------------------------------

    def on_revoke(self, event: Revocation) -> None:
        """``TokenService.on_revoke`` callback: delete the credentials of revoked tokens."""
        if not event.jtis:
            return
        ids = list(event.jtis)
        marks = ", ".join("?" for _ in ids)
        with self._store.transaction() as tx:
            tx.execute(
                f"UPDATE native_grants SET revoked = ? WHERE jti IN ({marks})",  # noqa: S608
                (time.time(), *ids),
            )
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM native_grants WHERE jti IN ({marks})",  # noqa: S608
                ids,
            )
        self._delete_all(rows)

    def sweep_forever(self, stop: threading.Event, every_s: float = _SWEEP_EVERY_S) -> None:
        """Sweep now, then every ``every_s`` seconds until ``stop`` is set, so an expired
        credential is deleted on its backend (a Girder grant's API key) within a minute
        even when no new grant comes to trigger a sweep."""
        while True:
            try:
                self.sweep()
            except Exception:
                log.warning("native grant sweep failed", exc_info=True)
            if stop.wait(every_s):
                return

    def sweep(self) -> int:
        """Retry revoked grants and forget expired ones; returns how many rows went."""
        if not self._sweep_lock.acquire(blocking=False):
            return 0
        try:
            self._swept_at = time.monotonic()
            with self._store.reading() as tx:
                rows = tx.query(
                    f"SELECT {_COLUMNS} FROM native_grants "  # noqa: S608
                    "WHERE revoked IS NOT NULL OR expires < ?",
                    (time.time(),),
                )
            return self._delete_all(rows)
        finally:
            self._sweep_lock.release()

    def _delete_all(self, rows: Sequence[Row]) -> int:
        done = 0
        now = time.time()
        for row in rows:
            # An expired credential no longer opens anything: forget it even if the
            # backend cannot be told.
            if self._delete_one(row) or float(row[7]) < now:
                with self._store.transaction() as tx:
                    tx.execute("DELETE FROM native_grants WHERE id = ?", (row[0],))
                done += 1
        return done

    def _delete_one(self, row: Row) -> bool:
        """Delete one credential on its backend; True when it is gone (or cannot be had)."""
        _id, jti, user, mount_name, kind, key_id, blob, _exp = row
        mount = self._mounts.settings.mount(mount_name)
        if mount is None:
            return True  # the mount was removed from the configuration
        try:
            plain = self._keys.decrypt(key_id, blob, _aad(jti, mount_name), "a native grant")
            secret = json.loads(plain)
            delegation = Delegation(
                kind, secret["value"], dt.datetime.fromtimestamp(_exp, dt.UTC),
                headers=dict(secret.get("headers") or {}),
                revoke_ref=str(secret.get("ref") or ""),
            )  # fmt: skip
        except Exception:
            log.warning("native grant %s on %s cannot be decrypted; dropped", _id, mount_name)
            return True
        try:
            revoke = self._revoker(mount, user)
            revoke(delegation)
        except NotFound:
            return True
        except (StorageError, CarminError) as exc:
            # No secret in the message: adapters never put one there.
            log.warning("could not delete %s %s on %s: %s", kind, _id, mount_name, exc)
            return False
        log.info("deleted %s %s on %s (token %s)", kind, _id, mount_name, jti)
        return True

    def _revoker(self, mount: MountConfig, user: str) -> Callable[[Delegation], None]:
        try:
            storage = self._mounts.storage(mount, user)
        except (StorageError, CarminError):
            # The user's key is gone (e.g. DELETE /user/externalKeys): the mount's own
            # service credential may still own or administer the credential, or the
            # adapter can delete it with no credential at all (a Girder token itself).
            adapter = self._mounts.adapter(mount)
            try:
                storage = adapter.bind(None)
            except (StorageError, CarminError):
                if not features(adapter).revocable:
                    raise
                return cast(Revocable, adapter).revoke_delegation
        return cast(Revocable, storage).revoke_delegation
