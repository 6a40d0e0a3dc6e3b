"""The audit log: who exchanged, used or revoked which token, on what, with what result.

``record`` only appends to an in-memory buffer, so it never waits for the database;
a background thread writes the buffer in batches every ``flush_interval`` seconds (one
transaction per batch), which keeps thousands of requests per second cheap. ``close``
writes what is left. Anything that looks like a fedgate API key or a JWT is masked
before it is stored, as a last line of defence: callers must not pass secrets anyway.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any

from .store import Store

log = logging.getLogger(__name__)

_MAX_BUFFER = 200_000
_MAX_TEXT = 4096
_SECRETS = (
    (re.compile(r"fgk_([0-9a-f]{16})_[A-Za-z0-9_-]+"), r"fgk_\1_***"),
    (re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "<jwt>"),
)
_COLUMNS = (
    "time, event, user_name, token_id, mount, path, operation, result, status, bytes, "
    "execution_id, detail"
)


@dataclass(frozen=True)
class AuditEvent:
    time: float
    event: str  # "exchange", "access", "revoke", "key_put", "key_delete", ...
    user: str | None = None
    token_id: str | None = None
    mount: str | None = None
    path: str | None = None
    operation: str | None = None
    result: str = "ok"  # "ok", "denied", "error:<code>"
    status: int | None = None
    bytes: int | None = None
    execution_id: str | None = None
    detail: str | None = None


def _scrub(value: str | None) -> str | None:
    if value is None:
        return None
    value = value[:_MAX_TEXT]
    for pattern, repl in _SECRETS:
        value = pattern.sub(repl, value)
    return value


def scrub(event: AuditEvent) -> AuditEvent:
    """The event with every text field truncated and secret-looking strings masked."""
    changes: dict[str, Any] = {}
    for f in fields(event):
        v = getattr(event, f.name)
        if isinstance(v, str):
            s = _scrub(v)
            if s != v:
                changes[f.name] = s
    return replace(event, **changes) if changes else event


class AuditLog:
    """Buffered, batched audit writer and reader; thread-safe."""

    def __init__(self, store: Store, flush_interval: float = 0.5) -> None:
        self._store = store
        self._interval = flush_interval
        self._buffer: deque[AuditEvent] = deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self.dropped = 0  # events lost because the buffer overflowed (database down)

    def record(self, event: AuditEvent) -> None:
        """Queue an event; returns at once."""
        if len(self._buffer) >= _MAX_BUFFER:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        if self._closed:  # a straggler after close: write it directly
            try:
                self.flush()
            except Exception:
                log.exception("audit flush failed")
        elif self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._run, name="fedgate-audit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep the events and retry at the next tick
                log.exception("audit flush failed; will retry")

    def flush(self) -> None:
        """Write every buffered event now (events stay buffered if the write fails)."""
        with self._flush_lock:
            batch: list[AuditEvent] = []
            while self._buffer and len(batch) < 5000:
                batch.append(self._buffer.popleft())
            while batch:
                rows = [self._row(scrub(e)) for e in batch]
                try:
                    with self._store.transaction() as tx:
                        tx.executemany(
                            f"INSERT INTO audit ({_COLUMNS}) "  # noqa: S608
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            rows,
                        )
                except Exception:
                    self._buffer.extendleft(reversed(batch))
                    raise
                batch = []
                while self._buffer and len(batch) < 5000:
                    batch.append(self._buffer.popleft())

    @staticmethod
    def _row(e: AuditEvent) -> tuple[Any, ...]:
        return (
            e.time,
            e.event,
            e.user,
            e.token_id,
            e.mount,
            e.path,
            e.operation,
            e.result,
            e.status,
            e.bytes,
            e.execution_id,
            e.detail,
        )

    def query(
        self,
        *,
        user: str | None = None,
        token_id: str | None = None,
        execution_id: str | None = None,
        mount: str | None = None,
        event: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[AuditEvent]:
        """Matching events, newest first (pending events are flushed first)."""
        self.flush()
        where: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("user_name", user),
            ("token_id", token_id),
            ("execution_id", execution_id),
            ("mount", mount),
            ("event", event),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if until is not None:
            where.append("time < ?")
            params.append(until)
        sql = f"SELECT {_COLUMNS} FROM audit"  # noqa: S608
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC LIMIT ?"
        params.append(max(0, min(int(limit), 100_000)))
        with self._store.transaction(write=False) as tx:
            rows = tx.query(sql, params)
        return [
            AuditEvent(
                time=float(r[0]),
                event=r[1],
                user=r[2],
                token_id=r[3],
                mount=r[4],
                path=r[5],
                operation=r[6],
                result=r[7],
                status=r[8],
                bytes=r[9],
                execution_id=r[10],
                detail=r[11],
            )
            for r in rows
        ]

    def close(self) -> None:
        """Stop the writer thread and write what is left."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        self.flush()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
