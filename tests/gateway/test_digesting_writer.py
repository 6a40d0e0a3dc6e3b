"""DigestingWriter's hashing thread: the values are those of the bytes in order, a buffer
its owner refills after ``write`` is hashed as it was, and neither commit nor abort
leaves the thread running. A recording writer stands in for the storage: what is under
test is the wrapper, the storages are exercised by tests/gateway/test_digests.py."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from adapters.base import ChecksumMismatch, Entry
from gateway.datapath.digesting import DigestingWriter


class Recorder:
    def __init__(self) -> None:
        self.data = bytearray()
        self.state = "open"

    def write(self, data: bytes) -> None:
        self.data += data

    def commit(self) -> Entry:
        self.state = "committed"
        return Entry(path="x", is_dir=False, size=len(self.data))

    def abort(self) -> None:
        self.state = "aborted"


def digest_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fedgate-digest"]


def test_a_reused_buffer_is_hashed_as_it_was_written() -> None:
    blocks = [os.urandom(256 * 1024 + i) for i in range(6)]
    inner = Recorder()
    writer = DigestingWriter(inner)
    buffer = bytearray(300 * 1024)
    for block in blocks:
        buffer[: len(block)] = block
        writer.write(memoryview(buffer)[: len(block)])  # type: ignore[arg-type]
        buffer[:] = bytes(len(buffer))  # the owner reuses it at once
    writer.commit()
    whole = b"".join(blocks)
    assert writer.values["sha256"] == hashlib.sha256(whole).hexdigest()
    assert writer.values["md5"] == hashlib.md5(whole).hexdigest()
    assert inner.data == whole and inner.state == "committed"
    assert digest_threads() == []


def test_a_mismatch_is_refused_before_commit_and_abort_ends_the_thread() -> None:
    inner = Recorder()
    writer = DigestingWriter(inner, expected={"sha256": "0" * 64})
    for _ in range(4):
        writer.write(os.urandom(64 * 1024))
    assert digest_threads()  # several blocks: hashed beside the writer
    with pytest.raises(ChecksumMismatch):
        writer.commit()
    assert inner.state == "open" and digest_threads() == []
    writer.abort()
    assert inner.state == "aborted"

    other = DigestingWriter(Recorder())
    for _ in range(3):
        other.write(b"x" * 1000)
    other.abort()  # a cut upload: no thread left waiting for blocks
    assert digest_threads() == []
