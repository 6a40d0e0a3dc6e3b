from __future__ import annotations

import threading
import time

from tokens.audit import AuditEvent, AuditLog, scrub
from tokens.masterkey import MasterKeys
from tokens.scopes import parse_scopes
from tokens.service import TokenService
from tokens.store import Store
from tokens.users import UserService


def ev(t: float, **kw: object) -> AuditEvent:
    base: dict[str, object] = {"time": t, "event": "access", "user": "alice", "result": "ok"}
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def test_round_trip_and_filters(store: Store) -> None:
    log = AuditLog(store, flush_interval=10)
    t0 = time.time()
    full = AuditEvent(
        time=t0,
        event="exchange",
        user="alice",
        token_id="jti-1",
        mount="s3",
        path="/s3/data/in.nii",
        operation="read",
        result="ok",
        status=200,
        bytes=12345,
        execution_id="exec-1",
        detail="scopes=storage.read:/s3/data",
    )
    log.record(full)
    log.record(ev(t0 + 1, token_id="jti-1", mount="s3", result="denied", status=403))
    log.record(ev(t0 + 2, user="bob", mount="girder", execution_id="exec-2"))
    log.record(ev(t0 + 3, event="revoke", token_id="jti-1", result="error:backend"))
    assert log.query(token_id="jti-1")[-1] == full  # query flushes first
    assert [e.time for e in log.query(token_id="jti-1")] == [t0 + 3, t0 + 1, t0]
    assert [e.user for e in log.query(mount="girder")] == ["bob"]
    assert [e.time for e in log.query(user="alice", since=t0 + 0.5, until=t0 + 3)] == [t0 + 1]
    assert [e.time for e in log.query(execution_id="exec-1")] == [t0]
    assert [e.event for e in log.query(event="revoke")] == ["revoke"]
    assert len(log.query(limit=2)) == 2
    assert len(log.query()) == 4
    log.close()


def test_background_flush_and_close(db_url: str, store: Store) -> None:
    log = AuditLog(store, flush_interval=0.05)
    log.record(ev(time.time()))
    other = Store.open(db_url)
    try:
        reader = AuditLog(other)
        deadline = time.monotonic() + 3
        while not reader.query() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(reader.query()) == 1  # written without an explicit flush
        for i in range(50):
            log.record(ev(float(i)))
        log.close()  # writes the rest
        assert len(reader.query(limit=1000)) == 51
        log.record(ev(99.0))  # after close: written synchronously, not lost
        assert len(reader.query(limit=1000)) == 52
    finally:
        other.close()


def test_record_never_waits_for_the_database(db_url: str, store: Store) -> None:
    """Requests record while another process holds the audit table locked: ``record``
    only queues (what makes it cheap; its rate is for bench/, not for a timed test)."""
    log = AuditLog(store, flush_interval=0.05)
    n = 20_000
    locker = Store.open(db_url)
    done = threading.Event()

    def record_all() -> None:
        for i in range(n):
            log.record(ev(float(i), path=f"/s3/f{i}", bytes=i))
        done.set()

    try:
        with locker.transaction() as tx:  # a writer that does not let go
            if locker.is_postgres:
                tx.execute("LOCK TABLE audit IN EXCLUSIVE MODE")
            else:
                tx.execute("DELETE FROM audit WHERE id < 0")  # takes SQLite's write lock
            threading.Thread(target=record_all, daemon=True).start()
            assert done.wait(60), "record() waited for the locked database"
        log.close()  # the lock is gone: everything is written
        assert len(log.query(limit=100_000)) == n
    finally:
        locker.close()


def test_no_secret_in_audit(store: Store) -> None:
    users = UserService(store)
    _, key = users.add_user("alice")
    svc = TokenService(store, MasterKeys.parse(MasterKeys.generate()), "https://fg")
    token = svc.issue("alice", parse_scopes("storage.read:/s3")).access_token
    log = AuditLog(store)
    # A careless caller puts secrets in free text: they are masked before storage.
    log.record(ev(1.0, detail=f"subject_token={key} access_token={token}", path=f"/s3/{key}"))
    log.close()
    with store.transaction(write=False) as tx:
        dump = repr(tx.query("SELECT * FROM audit"))
    assert key not in dump and token not in dump
    assert key.split("_", 2)[2] not in dump
    got = log.query()[0]
    assert got.detail is not None and "<jwt>" in got.detail and "fgk_" in got.detail
    assert scrub(ev(1.0, detail="plain")) == ev(1.0, detail="plain")
