"""Kept content digests: md5, adler32, sha-256, crc32c of a file, with what identified it.

A row says "the bytes at (mount, path) that had this identity hash to these values".
The identity is an opaque string the gateway builds from a fresh stat (size, mtime,
inode, ETag...; gateway/digests.py): a reader compares it with the identity it sees
now and ignores a row that no longer matches, so a file changed behind fedgate's back
is never served its old digest. Values are lowercase hex.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from .store import Store

ALGORITHMS = ("md5", "adler32", "sha256", "crc32c")


@dataclass(frozen=True, slots=True)
class KeptDigests:
    identity: str
    values: dict[str, str] = field(default_factory=dict)


def _key(mount: str, path: str) -> str:
    return hashlib.sha256(f"{mount}\0{path}".encode()).hexdigest()


class DigestStore:
    """The ``digests`` table (migrations 5 and 6). Every method blocks: call from a thread."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, mount: str, path: str) -> KeptDigests | None:
        with self._store.reading() as tx:
            row = tx.query_one(
                "SELECT identity, md5, adler32, sha256, crc32c FROM digests WHERE key = ?",
                (_key(mount, path),),
            )
        if row is None:
            return None
        values = {name: str(v) for name, v in zip(ALGORITHMS, row[1:], strict=True) if v}
        return KeptDigests(str(row[0]), values)

    def put(self, mount: str, path: str, identity: str, values: dict[str, str]) -> None:
        """Keep ``values`` for the bytes with ``identity``, replacing what was kept."""
        unknown = set(values) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"unknown digest algorithms {sorted(unknown)}")
        columns = [values.get(name) for name in ALGORITHMS]
        with self._store.transaction() as tx:
            tx.execute(
                "INSERT INTO digests"
                " (key, mount, path, identity, md5, adler32, sha256, crc32c, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                " identity = excluded.identity, md5 = excluded.md5,"
                " adler32 = excluded.adler32, sha256 = excluded.sha256,"
                " crc32c = excluded.crc32c, updated = excluded.updated",
                (_key(mount, path), mount, path, identity, *columns, time.time()),
            )

    def forget(self, mount: str, path: str) -> None:
        with self._store.transaction() as tx:
            tx.execute("DELETE FROM digests WHERE key = ?", (_key(mount, path),))
