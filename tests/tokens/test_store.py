from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tokens.errors import StoreError
from tokens.migrations import MIGRATIONS, Migration
from tokens.store import Store

REPO = Path(__file__).resolve().parents[2]


def test_upgrade_is_idempotent(db_url: str) -> None:
    s = Store.open(db_url)
    try:
        assert s.version() == 0
        v = s.upgrade()
        assert v == MIGRATIONS[-1].version
        assert s.upgrade() == v
        assert s.version() == v
        with s.transaction(write=False) as tx:
            rows = tx.query("SELECT version FROM schema_version ORDER BY version")
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
    finally:
        s.close()


def test_new_migration_applies_once_in_order(store: Store) -> None:
    base = store.version()
    extra = (
        *MIGRATIONS,
        Migration(base + 1, ("CREATE TABLE extra_t (k TEXT PRIMARY KEY, v INTEGER)",)),
        Migration(base + 2, ("INSERT INTO extra_t (k, v) VALUES ('a', 1)",)),
    )
    assert store.upgrade(extra) == base + 2
    assert store.upgrade(extra) == base + 2  # the INSERT does not run twice
    with store.transaction(write=False) as tx:
        assert tx.query("SELECT k, v FROM extra_t") == [("a", 1)]


def test_failed_migration_rolls_back(store: Store) -> None:
    base = store.version()
    bad = (
        *MIGRATIONS,
        Migration(base + 1, ("CREATE TABLE half_t (k TEXT)", "THIS IS NOT SQL")),
    )
    with pytest.raises(StoreError):
        store.upgrade(bad)
    assert store.version() == base
    good = (*MIGRATIONS, Migration(base + 1, ("CREATE TABLE half_t (k TEXT)",)))
    assert store.upgrade(good) == base + 1


def test_newer_schema_is_refused(store: Store) -> None:
    v = store.version()
    with store.transaction() as tx:
        tx.execute("INSERT INTO schema_version (version, applied) VALUES (?, 0)", (v + 5,))
    with pytest.raises(StoreError, match="newer"):
        store.upgrade()


def test_bad_migration_list_is_refused(store: Store) -> None:
    with pytest.raises(StoreError):
        store.upgrade((Migration(2, ()), Migration(1, ())))


def test_transaction_rolls_back_on_exception(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.execute("INSERT INTO users (name, is_admin, created) VALUES ('x', 0, 0)")
        raise RuntimeError("boom")
    with store.transaction(write=False) as tx:
        assert tx.query("SELECT name FROM users") == []


def test_concurrent_upgrade_from_processes(db_url: str) -> None:
    code = (
        "import sys; from tokens.store import Store; "
        "s = Store.open(sys.argv[1]); print(s.upgrade()); s.close()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == str(MIGRATIONS[-1].version)
    s = Store.open(db_url)
    try:
        with s.transaction(write=False) as tx:
            rows = tx.query("SELECT version FROM schema_version")
        assert sorted(r[0] for r in rows) == [m.version for m in MIGRATIONS]
    finally:
        s.close()


def test_threads_share_a_store(store: Store) -> None:
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                with store.transaction() as tx:
                    tx.execute(
                        "INSERT INTO users (name, is_admin, created) VALUES (?, 0, 0)",
                        (f"u{i}-{j}",),
                    )
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.transaction(write=False) as tx:
        assert tx.query_one("SELECT COUNT(*) FROM users") == (120,)


def test_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store.open("mysql://u:secretpw@h/db")
    for url in (
        "postgresql://u:secretpw@127.0.0.1:1/db",
        "postgresql://u:secretpw@127.0.0.1:notaport/db",
        "postgresql://u:secretpw@127.0.0.1:1/db?bogus=secretpw",
    ):
        with pytest.raises(StoreError) as ei:
            Store.open(url)
        assert "secretpw" not in str(ei.value)
        assert "secretpw" not in repr(ei.value.__cause__)  # not even in the chained cause
    with pytest.raises(StoreError):
        Store.open("sqlite://")
    s = Store.open(f"sqlite:///{tmp_path}/sub/dir/state.db")  # parent is created
    assert s.upgrade() >= 1
    s.close()
    with pytest.raises(StoreError, match="closed"), s.transaction():
        pass


def test_sqlite_uses_wal(tmp_path: Path) -> None:
    s = Store.open(f"sqlite:///{tmp_path}/state.db")
    with s.transaction(write=False) as tx:
        assert tx.query_one("PRAGMA journal_mode") == ("wal",)
    s.close()


def test_reads_answer_while_another_replica_writes(tmp_path: Path) -> None:
    """``reading()`` takes no write lock: a gateway answering a token check or a
    credential lookup must not queue behind a long write (a master key rotation
    re-wraps every secret in one transaction). The writer holds its transaction until
    the reads are done, so a read that waited for it would fail after the busy timeout."""
    from tokens.masterkey import MasterKeys
    from tokens.vault import KeyVault, StoredCredential

    url = f"sqlite:///{tmp_path}/state.db"
    reader, writer = Store.open(url), Store.open(url)
    reader.upgrade()
    vault = KeyVault(reader, MasterKeys.parse(MasterKeys.generate()))
    vault.put("alice", "s3", StoredCredential("apikey", {"apiKey": "k"}))
    holding, done = threading.Event(), threading.Event()

    def write() -> None:
        with writer.transaction() as tx:
            tx.execute("DELETE FROM vault WHERE user_name = 'nobody'")
            holding.set()
            done.wait(60)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert holding.wait(30)
        with reader.reading() as tx:
            assert tx.query_one("SELECT COUNT(*) FROM vault") == (1,)
        assert vault.get("alice", "s3") == StoredCredential("apikey", {"apiKey": "k"})
        assert [info.storage_id for info in vault.list("alice")] == ["s3"]
        assert thread.is_alive()  # the writer still holds its transaction
    finally:
        done.set()
        thread.join()
        reader.close()
        writer.close()
