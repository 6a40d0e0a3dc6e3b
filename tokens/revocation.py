"""The set of revoked tokens, persisted in the store and mirrored in memory.

Three kinds of entries: a token id (``jti``), which also kills every token narrowed from
it (their ``fedgate.chain`` names it); an execution id, optionally bound to one user;
and an API key id, which kills every token exchanged from that key (``fedgate.key``),
including one a replica mints in the moment it still trusts the key from its cache.
Entries expire once no token they could match can still be valid. Each process
reloads the whole (small) set at most every ``poll`` seconds, so a revocation made by
another replica is enforced within ``poll`` plus one query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# The claims type comes from its own module, not from ``service`` (which imports this
# one): no cycle, not even a type-only one.
from .claims import TokenClaims
from .scopes import parse_scopes, touches
from .store import Store, Tx


@dataclass(frozen=True)
class Revocation:
    """What a revocation did, handed to ``TokenService.on_revoke`` callbacks."""

    jtis: tuple[str, ...]  # live tokens made invalid, including narrowed descendants
    execution_id: str | None = None
    user: str | None = None
    storage_id: str | None = None
    key_id: str | None = None


def _exec_key(execution_id: str, user: str | None) -> str:
    return execution_id if user is None else f"{user}\n{execution_id}"


# A key entry outlives the longest token by this much more: a replica that still had the
# key cached may mint a token from it a moment after the revocation.
_KEY_MARGIN_S = 60.0


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


class RevocationSet:
    def __init__(self, store: Store, poll: float, ttl: float, leeway: float) -> None:
        self._store = store
        self._leeway = leeway
        self._poll = poll
        self._ttl = ttl  # longest a revoked token could otherwise still be accepted
        self._jtis: set[str] = set()
        self._execs: set[str] = set()
        self._keys: set[str] = set()
        self._loaded_at = -1e18
        self._lock = threading.Lock()

    def is_revoked(self, c: TokenClaims) -> bool:
        jtis = self._jtis
        if c.jti in jtis or any(a in jtis for a in c.chain):
            return True
        if c.key_id is not None and c.key_id in self._keys:
            return True
        if c.execution_id is not None:
            execs = self._execs
            return c.execution_id in execs or _exec_key(c.execution_id, c.sub) in execs
        return False

    def refresh_if_due(self) -> None:
        if time.monotonic() - self._loaded_at < self._poll:
            return
        # One thread reloads; the others go on with the current set meanwhile.
        if not self._lock.acquire(blocking=False):
            return
        try:
            started = time.monotonic()
            with self._store.reading() as tx:
                rows = tx.query(
                    "SELECT kind, value FROM revocations WHERE expires > ?", (time.time(),)
                )
            self._jtis = {v for k, v in rows if k == "jti"}
            self._execs = {v for k, v in rows if k == "exec"}
            self._keys = {v for k, v in rows if k == "key"}
            self._loaded_at = started
        finally:
            self._lock.release()

    def revoke(
        self,
        *,
        jtis: Sequence[str],
        execution_id: str | None,
        user: str | None,
        all_of_user: bool,
    ) -> Revocation:
        self.refresh_if_due()
        now = time.time()
        with self._store.transaction() as tx:
            targets = set(jtis)
            if user is not None and targets:
                owned = tx.query(
                    f"SELECT jti FROM issued_tokens WHERE sub = ? AND jti IN ({_marks(jtis)})",  # noqa: S608
                    (user, *jtis),
                )
                targets = {r[0] for r in owned}
            if all_of_user and user is not None:
                rows = tx.query(
                    "SELECT jti FROM issued_tokens WHERE sub = ? AND exp > ?",
                    (user, now - self._leeway),
                )
                targets |= {r[0] for r in rows}
            affected = self._live(tx, targets, now)
            exec_value = None
            if execution_id is not None:
                exec_value = _exec_key(execution_id, user)
                tx.execute(
                    "INSERT INTO revocations (kind, value, created, expires) "
                    "VALUES ('exec', ?, ?, ?)",
                    (exec_value, now, now + self._ttl),
                )
                sql = "SELECT jti FROM issued_tokens WHERE execution_id = ? AND exp > ?"
                params: tuple[object, ...] = (execution_id, now - self._leeway)
                if user is not None:
                    sql, params = sql + " AND sub = ?", (*params, user)
                affected |= {r[0] for r in tx.query(sql, params)}
            self._insert_jtis(tx, targets, now)
            affected |= self._descendants(tx, affected | targets, now)
            affected = self._not_yet_revoked(tx, affected)
        with self._lock:
            self._jtis |= targets
            if exec_value is not None:
                self._execs.add(exec_value)
        return Revocation(tuple(sorted(affected)), execution_id, user)

    def revoke_key(self, key_id: str) -> Revocation:
        """Kill every token exchanged from API key ``key_id`` (and narrowed from those)."""
        self.refresh_if_due()
        now = time.time()
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO revocations (kind, value, created, expires) VALUES ('key', ?, ?, ?)",
                (key_id, now, now + self._ttl + _KEY_MARGIN_S),
            )
            rows = tx.query(
                "SELECT jti FROM issued_tokens WHERE key_id = ? AND exp > ?",
                (key_id, now - self._leeway),
            )
            affected = self._not_yet_revoked(tx, {r[0] for r in rows})
        with self._lock:
            self._keys.add(key_id)
        return Revocation(tuple(sorted(affected)), key_id=key_id)

    def revoke_storage(self, user: str, storage_id: str) -> Revocation:
        path = "/" + storage_id.strip("/")
        now = time.time()
        with self._store.reading() as tx:
            rows = tx.query(
                "SELECT jti, scope FROM issued_tokens WHERE sub = ? AND exp > ?",
                (user, now - self._leeway),
            )
        hit = [jti for jti, scope in rows if any(touches(s, path) for s in parse_scopes(scope))]
        event = self.revoke(jtis=hit, execution_id=None, user=user, all_of_user=False)
        return Revocation(event.jtis, None, user, storage_id)

    def purge(self, before: float) -> None:
        """Forget expired revocations and the rows of tokens that expired before ``before``."""
        with self._store.transaction() as tx:
            tx.execute("DELETE FROM revocations WHERE expires < ?", (time.time(),))
            tx.execute("DELETE FROM issued_tokens WHERE exp < ?", (before,))

    # -- helpers -----------------------------------------------------------------------

    def _insert_jtis(self, tx: Tx, jtis: Iterable[str], now: float) -> None:
        tx.executemany(
            "INSERT INTO revocations (kind, value, created, expires) VALUES ('jti', ?, ?, ?)",
            [(j, now, now + self._ttl) for j in sorted(jtis)],
        )

    def _not_yet_revoked(self, tx: Tx, jtis: set[str]) -> set[str]:
        """Drop tokens an earlier revocation already covers (so counts mean something)."""
        if not jtis:
            return set()
        ids = sorted(jtis)
        rows = tx.query(
            "SELECT jti, sub, execution_id, parent, key_id FROM issued_tokens "  # noqa: S608
            f"WHERE jti IN ({_marks(ids)})",
            ids,
        )
        revoked, execs, keys = self._jtis, self._execs, self._keys
        return {
            jti
            for jti, sub, exe, parent, key in rows
            if jti not in revoked
            and parent not in revoked
            and key not in keys
            and not (exe is not None and (exe in execs or _exec_key(exe, sub) in execs))
        }

    def _live(self, tx: Tx, jtis: set[str], now: float) -> set[str]:
        if not jtis:
            return set()
        ids = sorted(jtis)
        rows = tx.query(
            f"SELECT jti FROM issued_tokens WHERE jti IN ({_marks(ids)}) AND exp > ?",  # noqa: S608
            (*ids, now - self._leeway),
        )
        return {r[0] for r in rows}

    def _descendants(self, tx: Tx, roots: set[str], now: float) -> set[str]:
        found: set[str] = set()
        frontier = sorted(roots)
        while frontier:
            rows = tx.query(
                f"SELECT jti FROM issued_tokens WHERE parent IN ({_marks(frontier)})",  # noqa: S608
                frontier,
            )
            new = {r[0] for r in rows} - found - roots
            found |= new
            frontier = sorted(new)
        return self._live(tx, found, now)
