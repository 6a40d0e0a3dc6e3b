"""The audit's forensic fields (request id, reason, client), its time formats, the
migration that adds them to an existing database, and retention — on SQLite and on the
real PostgreSQL."""

from __future__ import annotations

import re
import time

import pytest

from tokens import audit as audit_module
from tokens.audit import OPERATIONS, AuditEvent, AuditLog, iso_time, parse_time
from tokens.migrations import MIGRATIONS
from tokens.scopes import ACTIVITIES
from tokens.store import Store

DAY = 86_400.0


class Clock:
    """The audit log's injected clock: tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


def ev(t: float, **kw: object) -> AuditEvent:
    base: dict[str, object] = {"time": t, "event": "access", "user": "alice", "result": "ok"}
    base.update(kw)
    return AuditEvent(**base)  # type: ignore[arg-type]


def test_forensic_fields_round_trip_and_filters(store: Store) -> None:
    log = AuditLog(store, flush_interval=10)
    t0 = time.time()
    denied = ev(
        t0,
        operation="list",
        result="denied",
        status=403,
        request_id="rid-1",
        reason="no scope of the token allows read on /s3/b (its scopes: storage.read:/s3/a)",
        client="192.0.2.7",
    )
    log.record(denied)
    log.record(ev(t0 + 1, request_id="rid-2", client="2001:db8::1"))
    log.record(ev(t0 + 2, request_id="rid-2", result="error:50201", reason="backend down"))
    assert log.query(request_id="rid-1") == [denied]
    assert [e.time for e in log.query(request_id="rid-2")] == [t0 + 2, t0 + 1]
    assert [e.request_id for e in log.query(result="denied")] == ["rid-1"]
    assert log.query(request_id="rid-2", result="ok")[0].client == "2001:db8::1"
    assert log.query(request_id="nope") == []
    log.close()


def test_output_has_iso_times_and_no_unset_fields() -> None:
    out = ev(1764749411.25, request_id="r", reason="why").as_dict()
    assert out["time"] == "2025-12-03T08:10:11.250000Z"
    assert out["request_id"] == "r" and out["reason"] == "why"
    assert "client" not in out and "bytes" not in out


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2025-12-03T08:10:11Z", 1764749411.0),
        ("2025-12-03t08:10:11.5z", 1764749411.5),  # RFC 3339 allows lower case
        ("2025-12-03T09:10:11+01:00", 1764749411.0),
        ("2025-12-03T08:10:11", 1764749411.0),  # no offset: UTC
        ("2025-12-03", 1764720000.0),
        ("1764749411.5", 1764749411.5),  # epoch seconds, as /audit took them before
        (" 1764749411 ", 1764749411.0),
    ],
)
def test_parse_time_accepts(text: str, epoch: float) -> None:
    assert parse_time(text) == epoch
    assert parse_time(iso_time(epoch)) == epoch


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2025-13-01", "2025-12-03T25:00", "nan", "inf", "1e300", "x" * 65]
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601|epoch seconds"):
        parse_time(text)


def test_one_vocabulary_of_operations() -> None:
    # Every operation needs one of the scope grammar's activities, and none is spelled
    # like an activity (an audit row's operation never reads as a scope).
    assert set(OPERATIONS.values()) <= set(ACTIVITIES)
    assert not set(OPERATIONS) & set(ACTIVITIES)
    assert set(OPERATIONS) >= audit_module.REPLACING


def test_migration_adds_the_columns_to_an_existing_audit(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        store.upgrade(MIGRATIONS[:2])  # a database of the release before forensics
        with store.transaction() as tx:
            tx.execute(
                "INSERT INTO audit (time, event, user_name, result) VALUES (?, ?, ?, ?)",
                (100.0, "access", "alice", "ok"),
            )
        assert store.upgrade() >= 3
        log = AuditLog(store)
        old = log.query()
        assert [(e.time, e.user, e.request_id, e.reason, e.client) for e in old] == [
            (100.0, "alice", None, None, None)
        ]
        log.record(ev(200.0, request_id="r", reason="why", client="10.0.0.1"))
        assert log.query(request_id="r")[0].reason == "why"
        log.close()
    finally:
        store.close()


def test_retention_deletes_only_rows_older_than_it(store: Store) -> None:
    clock = Clock()
    log = AuditLog(store, flush_interval=10, retention_days=2, clock=clock)
    now = clock.now
    for age_days in (3.0, 2.01, 1.99, 0.0):
        log.record(ev(now - age_days * DAY, detail=f"{age_days}"))
    log.flush()
    assert log.purge() == 2
    assert sorted(e.detail or "" for e in log.query()) == ["0.0", "1.99"]
    clock.now += 1.0 * DAY  # the 1.99-day-old row is now 2.99 days old
    assert log.purge() == 1
    assert [e.detail for e in log.query()] == ["0.0"]
    log.close()


def test_retention_zero_keeps_everything(store: Store) -> None:
    log = AuditLog(store, flush_interval=10, retention_days=0)
    log.record(ev(1.0))  # 1970
    assert log.purge() == 0
    assert len(log.query()) == 1
    log.close()


def test_purge_works_in_batches(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "_PURGE_BATCH", 7)
    clock = Clock()
    log = AuditLog(store, flush_interval=10, retention_days=1, clock=clock)
    for i in range(30):
        log.record(ev(clock.now - 2 * DAY + i))
    log.record(ev(clock.now))
    log.flush()
    assert log.purge() == 30  # five batches, the last one short
    assert len(log.query(limit=100)) == 1
    log.close()


def test_writer_thread_purges_when_the_clock_says_so(store: Store) -> None:
    clock = Clock()
    log = AuditLog(store, flush_interval=0.02, retention_days=1, purge_every=3600, clock=clock)
    log.record(ev(clock.now - 0.5 * DAY, detail="recent"))
    deadline = time.monotonic() + 10
    while log.purged_at != clock.now and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.purged_at == clock.now  # the first tick purges (nothing old yet)
    assert [e.detail for e in log.query()] == ["recent"]
    clock.now += 600  # before purge_every: no purge
    log.record(ev(clock.now - 3 * DAY, detail="old"))
    log.flush()
    clock.now += 3000  # purge_every has passed since the last purge
    deadline = time.monotonic() + 10
    while log.purged_at != clock.now and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.purged_at == clock.now
    assert [e.detail for e in log.query()] == ["recent"]
    log.close()


@pytest.mark.parametrize("days", [-1, True, 1.5, "7"])
def test_retention_must_be_whole_days(store: Store, days: object) -> None:
    with pytest.raises(ValueError, match="retention"):
        AuditLog(store, retention_days=days)  # type: ignore[arg-type]


def test_request_ids_and_reasons_are_scrubbed(store: Store) -> None:
    log = AuditLog(store)
    secret = "fgk_0123456789abcdef_" + "s" * 40
    log.record(ev(1.0, reason=f"bad key {secret}", request_id="r" * 5000))
    got = log.query()[0]
    assert got.reason is not None and secret not in got.reason
    assert got.request_id is not None and len(got.request_id) == 4096
    assert re.fullmatch(r"bad key fgk_0123456789abcdef_\*\*\*", got.reason)
    log.close()
