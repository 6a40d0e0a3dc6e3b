"""The audit log: who exchanged, used or revoked which token, on what, with what result.

``record`` only appends to an in-memory buffer, so it never waits for the database;
a background thread writes the buffer in batches every ``flush_interval`` seconds (one
transaction per batch), which keeps thousands of requests per second cheap. ``close``
writes what is left. Anything that looks like a fedgate API key or a JWT is masked
before it is stored, as a last line of defence: callers must not pass secrets anyway.

Rows older than ``retention_days`` (0: kept forever) are deleted by the same thread, at
most once per ``purge_every`` seconds of its ``clock``, in small batches so a first purge
of a large table never holds the write lock for long.

``OPERATIONS`` is the one vocabulary of operations: what the audit records and what
``/explain`` accepts, each with the scope activity it needs.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
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
    "execution_id, detail, request_id, reason, client"
)
_PURGE_BATCH = 1000  # rows per purge transaction: bench/audit.py, docs/decisions.md
_DAY = 86_400.0

# Operation name (as the audit records it) -> the scope activity it needs. ``write`` and
# ``unpack`` need ``modify`` as well when their target already exists (REPLACING).
OPERATIONS: Mapping[str, str] = {
    "exists": "read",
    "properties": "read",
    "list": "read",
    "md5": "read",
    "content": "read",
    "resolve": "read",
    "mkdir": "create",
    "write": "create",
    "unpack": "create",
    "delete": "modify",
    # WebDAV MOVE: the source disappears (modify); the destination needs create, and
    # modify when it replaces something, like a write.
    "move": "modify",
    # WebDAV COPY between paths of the gateway: read at the source (the audit row's path);
    # the destination (its detail) needs create, and modify to replace, like a write.
    "copy": "read",
}
REPLACING = frozenset({"write", "unpack"})


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
    request_id: str | None = None  # the request's X-Request-ID, as in the access log
    reason: str | None = None  # why it was refused: the rule, in words
    client: str | None = None  # the client's address

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON output (HTTP and CLI): unset fields left out, ISO 8601 time."""
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["time"] = iso_time(self.time)
        return out


def iso_time(epoch: float) -> str:
    """``2026-12-03T08:10:11.123456Z``: UTC, microseconds."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """Epoch seconds from an ISO 8601 date or date-time (no offset means UTC) or from
    a number of epoch seconds; ``ValueError`` with a message for anything else."""
    value = text.strip()
    if not value or len(value) > 64:
        raise ValueError("a time must be ISO 8601, e.g. 2026-12-03T08:00:00Z")
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        if not math.isfinite(number) or abs(number) > 1e11:
            raise ValueError("a time in epoch seconds must be a finite number below 1e11")
        return number
    try:
        # RFC 3339 allows a lower-case t and z; fromisoformat does not.
        parsed = dt.datetime.fromisoformat(value.upper())
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-03T08:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError):  # year 1 minus an offset, on some platforms
        raise ValueError(f"{value!r} is out of range") from None


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

    def __init__(
        self,
        store: Store,
        flush_interval: float = 0.5,
        *,
        retention_days: int = 0,
        purge_every: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(retention_days, bool) or not isinstance(retention_days, int):
            raise ValueError("audit retention must be a whole number of days")
        if retention_days < 0:
            raise ValueError("audit retention must be 0 (keep forever) or a number of days")
        self._store = store
        self._interval = flush_interval
        self.retention_days = retention_days
        self.purge_every = purge_every
        self.clock = clock  # replaceable: tests move time forward instead of sleeping
        self._last_purge = -math.inf
        self.purged_at: float | None = None  # clock time of the last purge that succeeded
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
            if self.retention_days and self.clock() - self._last_purge >= self.purge_every:
                try:
                    self.purge()
                except Exception:
                    log.exception("audit purge failed; will retry")

    def purge(self) -> int:
        """Delete the rows older than the retention (none when it is 0); returns how many."""
        now = self.clock()
        self._last_purge = now  # a failing purge waits for the next period too
        if not self.retention_days:
            return 0
        cutoff = now - self.retention_days * _DAY
        total = 0
        while True:
            with self._store.transaction() as tx:
                n = tx.execute(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? LIMIT ?)",
                    (cutoff, _PURGE_BATCH),
                )
            total += n
            if n < _PURGE_BATCH:
                break
        self.purged_at = now
        if total:
            log.info(
                "audit retention: %d rows older than %d days deleted", total, self.retention_days
            )
        return total

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
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            e.request_id,
            e.reason,
            e.client,
        )

    def query(
        self,
        *,
        user: str | None = None,
        token_id: str | None = None,
        execution_id: str | None = None,
        mount: str | None = None,
        event: str | None = None,
        request_id: str | None = None,
        result: str | None = None,
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
            ("request_id", request_id),
            ("result", result),
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
        with self._store.reading() as tx:
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
                request_id=r[12],
                reason=r[13],
                client=r[14],
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
