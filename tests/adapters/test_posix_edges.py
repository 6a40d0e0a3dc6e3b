"""The local folder's storage at its edges, on a real folder: moves (WebDAV MOVE), the
md5 it keeps beside a file, staging left by dead processes, and what it cannot do."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.base import (
    AlreadyExists,
    BackendUnavailable,
    NotADirectory,
    NotFound,
    NotSupported,
    ParentNotFound,
    PermissionDenied,
)
from adapters.posix import MD5_XATTR, STAGING, PosixStorage
from adapters.posix import storage as posix_storage
from tests.adapters.conformance import write


@pytest.fixture
def storage(tmp_path: Path) -> PosixStorage:
    return PosixStorage(tmp_path / "root")


def _root(s: PosixStorage) -> Path:
    return Path(s.root)


@pytest.fixture(autouse=True)
def _make_root(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()


def test_moves_refuse_the_root_and_say_why(storage: PosixStorage) -> None:
    write(storage, "a", b"A")
    for src, dst in (("", "x"), ("a", "")):
        with pytest.raises(PermissionDenied, match=r"^the mount root cannot be moved$"):
            storage.rename(src, dst)
    assert (_root(storage) / "a").read_bytes() == b"A"


def test_a_move_that_may_not_replace_keeps_the_target(storage: PosixStorage) -> None:
    write(storage, "a", b"A")
    write(storage, "b", b"B")
    with pytest.raises(AlreadyExists, match=r"^b: already exists$"):
        storage.rename("a", "b", replace=False)
    assert (_root(storage) / "b").read_bytes() == b"B"
    storage.rename("a", "b")  # replacing is the default
    assert (_root(storage) / "b").read_bytes() == b"A" and not (_root(storage) / "a").exists()


def test_a_move_tells_a_missing_parent_from_a_missing_source(storage: PosixStorage) -> None:
    write(storage, "a", b"A")
    with pytest.raises(ParentNotFound, match=r"^no/such: parent does not exist$"):
        storage.rename("a", "no/such/a")
    with pytest.raises(ParentNotFound, match=r"^a: parent does not exist$"):
        storage.rename("a", "a/b")  # a is a file: its "child" has no folder to go in
    with pytest.raises(NotFound, match=r"^gone: "):
        storage.rename("gone", "b")
    assert (_root(storage) / "a").read_bytes() == b"A"


def test_a_move_on_a_vanished_mount_root_is_the_mounts_failure(storage: PosixStorage) -> None:
    shutil.rmtree(storage.root)
    with pytest.raises(BackendUnavailable):
        storage.rename("a", "b")


def test_the_kept_md5_is_used_for_md5_only(storage: PosixStorage) -> None:
    write(storage, "f", b"hello")
    full = str(_root(storage) / "f")
    assert storage.checksum("f", "md5") == hashlib.md5(b"hello").hexdigest()
    kept = os.getxattr(full, MD5_XATTR).decode()
    assert kept.endswith(":" + hashlib.md5(b"hello").hexdigest())
    # A kept md5 is what md5 answers; another algorithm reads the file.
    st = os.stat(full)
    os.setxattr(full, MD5_XATTR, f"{st.st_size}:{st.st_mtime_ns}:{'0' * 32}".encode())
    assert storage.checksum("f", "md5") == "0" * 32
    assert storage.checksum("f", "sha256") == hashlib.sha256(b"hello").hexdigest()
    assert storage.checksum("f", "md5") == "0" * 32  # another algorithm's answer not kept


def test_an_md5_computed_for_a_file_from_elsewhere_is_kept(storage: PosixStorage) -> None:
    """A file put in the folder by other means has no md5 kept: the first md5 asked for
    reads it and keeps the answer beside it."""
    full = _root(storage) / "f"
    full.write_bytes(b"from elsewhere")
    with pytest.raises(OSError):
        os.getxattr(full, MD5_XATTR)
    expected = hashlib.md5(b"from elsewhere").hexdigest()
    assert storage.checksum("f") == expected
    assert os.getxattr(full, MD5_XATTR).decode().endswith(":" + expected)


def test_a_folder_cannot_replace_a_file(storage: PosixStorage) -> None:
    """rename(2) of a folder onto a file is ENOTDIR: said as such, not as a missing
    parent, and both stay as they were."""
    write(storage, "f", b"F")
    (_root(storage) / "d").mkdir()
    with pytest.raises(NotADirectory, match=r"^f: not a directory$"):
        storage.rename("d", "f")
    assert (_root(storage) / "f").read_bytes() == b"F" and (_root(storage) / "d").is_dir()


def test_a_local_folder_has_no_url(storage: PosixStorage) -> None:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with pytest.raises(NotSupported, match=r"^a local folder has no URL of its own$"):
        storage.presign("f", "GET", expires)


def test_staging_of_a_live_process_stays_and_the_process_is_left_alone(
    storage: PosixStorage,
) -> None:
    """Only a dead process's staging folder is removed, and looking whether a process
    lives sends it no signal (the live one records every signal it gets, and says which
    once its stdin closes: a signal sent before that is handled before it answers)."""
    live = subprocess.Popen(
        [sys.executable, "-c", _RECORDS_SIGNALS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        assert live.stdout is not None and live.stdout.readline() == "ready\n"
        staging = _root(storage) / STAGING
        for pid in (live.pid, dead.pid):
            (staging / f"{socket.gethostname()}-{pid}").mkdir(parents=True)
        assert storage.clean_stale_staging() == 1
        assert sorted(os.listdir(staging)) == [f"{socket.gethostname()}-{live.pid}"]
        got, _ = live.communicate(timeout=60)
        assert got == "signals: []\n"
    finally:
        live.kill()
        live.wait()


_RECORDS_SIGNALS = """
import signal, sys
got = []
for sig in signal.valid_signals():
    if sig not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD):
        try:
            signal.signal(sig, lambda n, f: got.append(n))
        except (OSError, ValueError):
            pass
print("ready", flush=True)
sys.stdin.read()
print("signals:", [int(n) for n in got], flush=True)
"""


def test_a_process_we_may_not_signal_is_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's process (as root every process can be signalled, so the answer of
    the kernel is played here): its staging folder must not be taken for a dead one's."""

    def refuse(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", refuse)
    assert posix_storage._process_alive(12345)


def test_the_root_cannot_be_deleted(storage: PosixStorage) -> None:
    write(storage, "a", b"A")
    with pytest.raises(PermissionDenied, match=r"^the mount root cannot be deleted$"):
        storage.delete("")
    assert (_root(storage) / "a").read_bytes() == b"A"


def test_an_aborted_upload_leaves_no_file_and_no_descriptor(storage: PosixStorage) -> None:
    """A gateway aborts uploads all day long (cut clients, refused digests): each must
    give its file descriptor back, or the process runs out of them."""
    writer = storage.open_write("x")
    writer.write(b"partial")
    fd = writer._file.fileno()
    staged = os.readlink(f"/proc/self/fd/{fd}")
    writer.abort()
    try:
        now = os.readlink(f"/proc/self/fd/{fd}")
    except FileNotFoundError:
        now = None  # given back
    # Given back, or (another thread's since) naming another file: not the staged one.
    assert now is None or not now.startswith(staged), now
    assert not (_root(storage) / "x").exists()
    staging = _root(storage) / STAGING
    assert not staging.exists() or not any(p.is_file() for p in staging.rglob("*"))
