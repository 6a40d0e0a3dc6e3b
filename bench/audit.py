"""Audit retention: what a purge costs the writers that run beside it.

    .venv/bin/python bench/audit.py [--rows 200000] [--no-postgres]

For SQLite and PostgreSQL (scripts/testbeds/postgres.sh, a fresh schema per run): fill the
audit with ``--rows`` rows older than the retention, then delete them two ways while a
writer thread inserts one audit row per transaction, as the audit writer of a busy
replica does:

* fedgate's purge (``AuditLog.purge``): batches of 5000 rows, one transaction each;
* the peer: one ``DELETE FROM audit WHERE time < ?``.

Reported: the total time of each, and the writer's worst and median wait for one
insert during it (the database lock a purge holds is what a request's audit row, and
every other writer, waits for). Also ``record()`` calls per second (it only queues).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save, table
from tokens import audit as audit_module
from tokens.audit import AuditEvent, AuditLog
from tokens.store import Store

PG_URL = "postgresql://postgres@127.0.0.1:55432/fedgate"
DAY = 86_400.0


def fill(store: Store, rows: int, now: float) -> float:
    log = AuditLog(store, flush_interval=3600)
    started = time.perf_counter()
    for i in range(rows):
        log.record(
            AuditEvent(
                time=now - 3 * DAY + i * 1e-3,
                event="access",
                user="alice",
                path=f"/s3/data/f{i}",
                operation="content",
                status=200,
                request_id=secrets.token_hex(16),
                client="192.0.2.1",
            )
        )
    rate = rows / (time.perf_counter() - started)
    log.flush()
    return rate


def beside_a_writer(store: Store, work: Callable[[], Any]) -> dict[str, float]:
    """Run ``work`` while a thread inserts one row per transaction; the waits."""
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            with store.transaction() as tx:
                tx.execute(
                    "INSERT INTO audit (time, event, result) VALUES (?, ?, ?)",
                    (time.time(), "access", "ok"),
                )
            waits.append(time.perf_counter() - t)
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.1)
    started = time.perf_counter()
    work()
    total = time.perf_counter() - started
    stop.set()
    thread.join()
    return {
        "seconds": round(total, 3),
        "writer_max_ms": round(max(waits) * 1000, 1),
        "writer_median_ms": round(statistics.median(waits) * 1000, 2),
        "writer_inserts": len(waits),
    }


def run(url: str, rows: int) -> dict[str, Any]:
    store = Store.open(url)
    store.upgrade()
    try:
        now = time.time()
        out: dict[str, Any] = {"record_per_s": round(fill(store, rows, now))}
        log = AuditLog(store, flush_interval=3600, retention_days=1, clock=lambda: now)
        out["batched"] = beside_a_writer(store, log.purge)
        fill(store, rows, now)

        def one_delete() -> None:
            with store.transaction() as tx:
                tx.execute("DELETE FROM audit WHERE time < ?", (now - DAY,))

        out["single_delete"] = beside_a_writer(store, one_delete)
        return out
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--batch", type=int, help="rows per purge transaction (default: fedgate's)")
    args = parser.parse_args()
    if args.batch:
        audit_module._PURGE_BATCH = args.batch
    results: dict[str, Any] = {"rows": args.rows, "batch": audit_module._PURGE_BATCH}
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = run(f"sqlite:///{tmp}/state.db", args.rows)
    if not args.no_postgres:
        import psycopg

        schema = "bench_audit_" + secrets.token_hex(4)
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        try:
            results["postgresql"] = run(f"{PG_URL}?options=-csearch_path%3D{schema}", args.rows)
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    for db in ("sqlite", "postgresql"):
        if db not in results:
            continue
        r = results[db]
        rows = [("record() calls/s", f"{r['record_per_s']:,}", "queue only")]
        for how in ("batched", "single_delete"):
            m = r[how]
            rows.append(
                (
                    f"{how} purge",
                    f"{m['seconds']} s",
                    f"writer wait max {m['writer_max_ms']} ms, median "
                    f"{m['writer_median_ms']} ms ({m['writer_inserts']} inserts)",
                )
            )
        print(table(f"{db}: purge {args.rows:,} rows, {results['batch']} per batch", rows))
    save("audit", results)


if __name__ == "__main__":
    main()
