"""The persistent store behind users, the key vault, tokens and the audit log.

One ``Store`` per process, shared by every thread. It hands out connections from a
small pool, each used by one thread at a time inside ``transaction()``. SQL is written
once with ``?`` placeholders and translated for PostgreSQL (``%s``).

- ``sqlite:///abs/path/state.db``: WAL mode (readers never block the writer), a busy
  timeout, and ``BEGIN IMMEDIATE`` for writes so two writers queue instead of failing
  on a lock upgrade. Good for one process (or a few on one host).
- ``postgresql://user@host:port/db``: for several replicas. Migrations take a
  transaction-scoped advisory lock so replicas starting together upgrade once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from .errors import StoreError
from .migrations import DIALECT_TYPES, MIGRATIONS, Migration

# Arbitrary constant shared by every fedgate process: the advisory lock id of migrations.
_MIGRATION_LOCK = 0x66656467  # "fedg"
_BUSY_TIMEOUT_S = 15.0
_MAX_IDLE = 8

Row = tuple[Any, ...]


class Tx:
    """One open transaction on one connection (only valid inside ``Store.transaction``)."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self._conn = conn
        self._pg = dialect == "postgresql"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the number of rows it changed."""
        cur = self._conn.execute(self._sql(sql), tuple(params))
        n = cur.rowcount
        return int(n) if n is not None else 0

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._pg:
            with self._conn.cursor() as cur:
                cur.executemany(self._sql(sql), [tuple(r) for r in rows])
        else:
            self._conn.executemany(sql, [tuple(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in cur.fetchall()]

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cur = self._conn.execute(self._sql(sql), tuple(params))
        row = cur.fetchone()
        return tuple(row) if row is not None else None


class Store:
    """Thread-safe access to the database; see the module docstring."""

    def __init__(self, dialect: str, target: str) -> None:
        if dialect not in DIALECT_TYPES:
            raise StoreError(f"unsupported database dialect {dialect!r}")
        self.dialect = dialect
        self._target = target
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def open(url: str) -> Store:
        """Open ``sqlite:///abs/path.db`` or ``postgresql://user@host:port/db``."""
        if url.startswith("sqlite://"):
            path = url[len("sqlite://") :]
            if path.startswith("//"):  # the sqlite:////abs/path spelling
                path = path[1:]
            if not path or path == "/" or ":memory:" in path:
                raise StoreError("sqlite URL needs a file path: sqlite:///abs/path/state.db")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            store = Store("sqlite", path)
        elif url.startswith(("postgresql://", "postgres://")):
            store = Store("postgresql", url)
        else:
            # Never echo the URL: it may carry a password.
            raise StoreError("database URL must start with sqlite:// or postgresql://")
        store._release(store._connect())  # fail early on a bad path or unreachable server
        return store

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def __repr__(self) -> str:
        where = self._target if self.dialect == "sqlite" else "<postgresql>"
        return f"Store({self.dialect}, {where})"

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            try:
                conn = sqlite3.connect(
                    self._target,
                    timeout=_BUSY_TIMEOUT_S,
                    isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                    check_same_thread=False,  # the pool hands it to one thread at a time
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(_BUSY_TIMEOUT_S * 1000)}")
                conn.execute("PRAGMA foreign_keys=ON")
            except sqlite3.Error as e:
                raise StoreError(f"cannot open SQLite database {self._target}: {e}") from e
            return conn
        try:
            import psycopg
        except ImportError as e:  # pragma: no cover - depends on the install
            raise StoreError(
                "PostgreSQL support needs psycopg: pip install 'fedgate[postgres]'"
            ) from e
        try:
            return psycopg.connect(self._target, autocommit=True, connect_timeout=10)
        except psycopg.Error as e:
            # libpq's message names host and port, never the password; strip it anyway.
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            try:
                password = psycopg.conninfo.conninfo_to_dict(self._target).get("password")
            except psycopg.Error:
                password = None
                msg = "malformed PostgreSQL URL"  # libpq may quote the URL back
            if password:
                msg = msg.replace(str(password), "***")
            raise StoreError(f"cannot connect to PostgreSQL: {msg}") from e

    def _acquire(self) -> Any:
        with self._lock:
            if self._closed:
                raise StoreError("store is closed")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _release(self, conn: Any) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def reading(self) -> AbstractContextManager[Tx]:
        """A transaction for read-only work: on SQLite it takes no write lock, so it
        answers while another connection writes (``transaction(write=False)``)."""
        return self.transaction(write=False)

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[Tx]:
        """A transaction: committed when the block ends, rolled back if it raises.

        ``write=False`` is a hint for read-only work (SQLite then takes no write lock);
        ``reading()`` says it shorter. Database errors surface as ``StoreError``; other
        exceptions pass through.
        """
        conn = self._acquire()
        try:
            if self.dialect == "sqlite":
                with self._sqlite_tx(conn, write) as tx:
                    yield tx
            else:
                with self._pg_tx(conn) as tx:
                    yield tx
        finally:
            # A PostgreSQL connection that lost its server must not go back to the pool.
            if self.is_postgres and (conn.closed or conn.broken):
                conn.close()
            else:
                self._release(conn)

    @contextmanager
    def _sqlite_tx(self, conn: sqlite3.Connection, write: bool) -> Iterator[Tx]:
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as e:
            raise StoreError(f"database error: {e}") from e
        try:
            yield Tx(conn, "sqlite")
        except sqlite3.Error as e:
            conn.rollback()
            raise StoreError(f"database error: {e}") from e
        except BaseException:
            conn.rollback()
            raise
        try:
            conn.commit()
        except sqlite3.Error as e:
            conn.rollback()
            raise StoreError(f"database error: {e}") from e

    @contextmanager
    def _pg_tx(self, conn: Any) -> Iterator[Tx]:
        import psycopg

        try:
            with conn.transaction():
                yield Tx(conn, "postgresql")
        except psycopg.Error as e:
            raise StoreError(f"database error: {type(e).__name__}: {_pg_message(e)}") from e

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # -- schema ------------------------------------------------------------------------

    def version(self) -> int:
        """The applied schema version (0 for an empty database)."""
        with self.reading() as tx:
            if not self._has_version_table(tx):
                return 0
            row = tx.query_one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    def upgrade(self, migrations: Sequence[Migration] = MIGRATIONS) -> int:
        """Apply the missing migrations, in order, in one transaction; returns the version.

        Idempotent, and safe when several processes call it at once: PostgreSQL
        serialises them with an advisory lock, SQLite with ``BEGIN IMMEDIATE``.
        """
        versions = [m.version for m in migrations]
        if versions != sorted(set(versions)) or (versions and versions[0] < 1):
            raise StoreError("migrations must have increasing positive versions")
        types = DIALECT_TYPES[self.dialect]
        with self.transaction() as tx:
            if self.is_postgres:
                tx.query("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            tx.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                f"version INTEGER PRIMARY KEY, applied {types['real']} NOT NULL)"
            )
            row = tx.query_one("SELECT MAX(version) FROM schema_version")
            current = int(row[0]) if row and row[0] is not None else 0
            if versions and current > versions[-1]:
                raise StoreError(
                    f"database schema version {current} is newer than this fedgate "
                    f"({versions[-1]}): upgrade fedgate"
                )
            for m in migrations:
                if m.version <= current:
                    continue
                for stmt in m.statements:
                    tx.execute(stmt.format(**types))
                tx.execute(
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                    (m.version, time.time()),
                )
                current = m.version
        return current

    def _has_version_table(self, tx: Tx) -> bool:
        if self.is_postgres:
            row = tx.query_one("SELECT to_regclass('schema_version') IS NOT NULL")
            return bool(row and row[0])
        row = tx.query_one(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
        )
        return row is not None


def _pg_message(e: Exception) -> str:
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return str(primary or "").strip() or "error"
