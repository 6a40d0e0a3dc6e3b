"""Digests computed while an upload streams: md5, adler32 and sha-256 in one pass.

``DigestingWriter`` wraps any storage Writer (adapters.base.Writer). Each block handed
to ``write`` is given to two hashing threads before the storage writes it, so hashing
overlaps the storage's own write and the socket read (hashlib and zlib release the GIL
on large buffers): md5 on one thread, sha-256 and adler32 on the other, the split that
keeps the two lanes about equally busy. ``commit`` waits for the lanes, compares what
the client announced (Content-Digest, Digest, CARMIN's md5), refuses a mismatch before
anything is visible (ChecksumMismatch, the caller aborts), then commits and hands the
values to ``keep`` (gateway/digests.py stores them). Nothing here runs on the event
loop: ``write`` and ``commit`` are called from the upload's thread.

A small upload (an archive's many little files) is hashed inline: starting two threads
would cost more than hashing it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import queue
import threading
import zlib
from collections.abc import Callable
from typing import Any

from adapters.base import ChecksumMismatch, Entry, Writer

log = logging.getLogger("fedgate")
# Below this many bytes the caller's thread hashes; above, the lanes take over.
INLINE_BYTES = 1024 * 1024
# Blocks a lane may lag behind the writes (each block is shared, never copied).
LANE_DEPTH = 2

Keep = Callable[[dict[str, str], Entry], None]


class _Lane:
    """One hashing thread fed through a small queue."""

    def __init__(self, update: Callable[[bytes], None], name: str) -> None:
        self._update = update
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=LANE_DEPTH)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (block := self._queue.get()) is not None:
            self._update(block)

    def put(self, block: bytes) -> None:
        self._queue.put(block)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


class Hasher:
    """md5, adler32 and sha-256 of a byte stream fed in order; see the module docstring.

    ``md5=False``: someone else hashes md5 (the local folder's writer does, for its
    xattr): one md5 pass per upload, not two -- md5 is the slowest of the three."""

    def __init__(self, md5: bool = True) -> None:
        self._md5: Any = hashlib.md5(usedforsecurity=False) if md5 else None
        self._sha256 = hashlib.sha256()
        self._adler = 1
        self._fed = 0
        self._lanes: list[_Lane] = []

    def _sha_and_adler(self, data: bytes) -> None:
        self._sha256.update(data)
        self._adler = zlib.adler32(data, self._adler)

    def update(self, data: bytes) -> None:
        if not isinstance(data, bytes):  # a bytearray may be reused by its producer
            data = bytes(data)
        self._fed += len(data)
        if not self._lanes and self._fed > INLINE_BYTES:
            self._lanes = [_Lane(self._sha_and_adler, "fedgate-digest-sha")]
            if self._md5 is not None:
                self._lanes.append(_Lane(self._md5.update, "fedgate-digest-md5"))
        if self._lanes:
            for lane in self._lanes:
                lane.put(data)
        else:
            if self._md5 is not None:
                self._md5.update(data)
            self._sha_and_adler(data)

    def _drain(self) -> None:
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.close()

    def finish(self) -> dict[str, str]:
        """The lowercase hex digests of everything fed (names as the adapters spell them)."""
        self._drain()
        values = {
            "adler32": f"{self._adler & 0xFFFFFFFF:08x}",
            "sha256": self._sha256.hexdigest(),
        }
        if self._md5 is not None:
            values["md5"] = self._md5.hexdigest()
        return values

    def cancel(self) -> None:
        self._drain()


def mismatch(computed: dict[str, str], expected: dict[str, str]) -> str | None:
    """The first algorithm whose announced value differs from the computed one."""
    for name, value in expected.items():
        have = computed.get(name)
        if have is not None and not hmac.compare_digest(have, value.lower()):
            return name
    return None


class DigestingWriter:
    """A Writer that hashes what passes through it; see the module docstring."""

    def __init__(
        self, inner: Writer, keep: Keep | None = None, expected: dict[str, str] | None = None
    ) -> None:
        self._inner = inner
        self._keep = keep
        self._expected = dict(expected or {})
        # A writer that hashes md5 itself says so (PosixWriter.md5_hexdigest, adapters/posix.py).
        own_md5 = getattr(inner, "md5_hexdigest", None)
        self._own_md5: Callable[[], str | None] | None = own_md5 if callable(own_md5) else None
        self._hasher = Hasher(md5=self._own_md5 is None)
        self._bypassed = False  # bytes went in without passing write(): nothing to keep
        self.values: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        # Only what is known to be safe is passed through: the block size hint, and a
        # local copy inside the kernel (adapters.base.LocalFill), whose bytes this
        # wrapper never sees, so that nothing is kept for them (they get hashed on
        # first request instead). Anything else is not this writer's.
        if name == "block_size":
            return getattr(self._inner, name)
        if name == "fill_from":
            fill = getattr(self._inner, name)

            def fill_from(source: str) -> int:
                self._bypassed = True
                return int(fill(source))

            return fill_from
        raise AttributeError(name)

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        self._inner.write(data)

    def commit(self) -> Entry:
        self.values = self._hasher.finish()
        if self._own_md5 is not None:
            md5 = self._own_md5()
            if md5:
                self.values["md5"] = md5
        if self._bypassed:
            if self._expected:  # never: only copies fill, and they announce nothing
                raise ChecksumMismatch("bytes copied without passing the digest check")
            self.values = {}
        wrong = mismatch(self.values, self._expected)
        if wrong is not None:
            label = "sha-256" if wrong == "sha256" else wrong
            raise ChecksumMismatch(f"the {label} announced does not match the bytes received")
        entry = self._inner.commit()
        if self._keep is not None and self.values:
            try:
                self._keep(self.values, entry)
            except Exception:  # the file is safely written; its digests get computed later
                log.warning("keeping the digests of an upload failed", exc_info=True)
        return entry

    def abort(self) -> None:
        self._hasher.cancel()
        self._inner.abort()


def digests_of(data: bytes) -> dict[str, str]:
    """md5, adler32 and sha-256 of bytes already in memory (hex, adapter names)."""
    hasher = Hasher()
    hasher.update(data)
    return hasher.finish()
