"""Digests computed while an upload streams: md5, adler32, sha-256, crc32c in one pass.

``DigestingWriter`` wraps any storage Writer (adapters.base.Writer). From the second
block of an upload on, each block handed to ``write`` goes to the storage writer at once
and to two hashing threads of the upload's own (Hasher.feed; one block queued each):
one for md5, the other for sha-256, adler32 and crc32c. md5 alone costs ~1.5 CPU-s per
GiB here and the three others ~0.7 together, about what the writer's copy into the page
cache or a part buffer costs: three lanes of similar length run side by side instead of
one after the other (bench/digests.py measured in-line hashing, one hashing thread and
two side by side; docs/decisions.md). Blocks are ``bytes``, which nobody can change
while a thread hashes them; any other buffer is copied first (Hasher.feed), since its
owner may reuse it once ``write`` returns. A one-block upload is hashed in line: no
thread for a small file. A writer that keeps the md5 of what it stored (the local
folder's xattr, adapters.base.KeepsMd5) is handed this md5 rather than hashing twice.

``commit`` waits for the hashing threads, compares what the client announced
(Content-Digest, Digest, CARMIN's md5), refuses a mismatch before anything is visible
(ChecksumMismatch, the caller aborts), then commits and hands the values to ``keep``
(gateway/api/digests.py stores them).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from adapters import checksums
from adapters.base import ChecksumMismatch, Entry, KeepsMd5, Writer
from gateway.datapath.socket_receive import WriteBehind

log = logging.getLogger("fedgate")

Keep = Callable[[dict[str, str], Entry], None]


class Hasher:
    """md5, adler32, sha-256 and crc32c (adapters/checksums.py: where its C extension is
    installed) of a byte stream fed in order.

    ``update`` hashes in the caller's thread. ``feed`` hashes the first block in line and
    the later ones in two threads of their own (md5; the three others), so the caller
    goes on with its block meanwhile; ``settle`` waits for them. A fed block that is not
    ``bytes`` is copied first: its owner may refill it while a thread hashes it."""

    def __init__(self) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha256 = hashlib.sha256()
        self._adler = checksums.ADLER32_START
        self._crc32c = checksums.CRC32C_START if checksums.CRC32C_FAST else None
        self._lanes: list[WriteBehind] = []  # the hashing threads, from the 2nd block on
        self._fed = 0

    def _update_md5(self, data: bytes) -> None:
        self._md5.update(data)

    def _update_others(self, data: bytes) -> None:
        self._sha256.update(data)
        self._adler = checksums.adler32(data, self._adler)
        if self._crc32c is not None:
            self._crc32c = checksums.crc32c(data, self._crc32c)

    def update(self, data: bytes) -> None:
        self._update_md5(data)
        self._update_others(data)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        self._fed += 1
        if self._fed == 1:
            self.update(data)  # in line: most files are one block, no thread for them
            return
        if not self._lanes:
            self._lanes = [
                WriteBehind(self._update_md5, name="fedgate-digest"),
                WriteBehind(self._update_others, name="fedgate-digest"),
            ]
        for lane in self._lanes:
            lane.put(data)

    def settle(self) -> BaseException | None:
        """Until the threads have hashed every block fed and returned; an error of
        theirs. Safe to call more than once (and on an abandoned stream)."""
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            lane.close()
        return next((lane.error for lane in lanes if lane.error is not None), None)

    def finish(self) -> dict[str, str]:
        """The lowercase hex digests of everything fed (names as the adapters spell them)."""
        failed = self.settle()
        if failed is not None:
            raise failed
        values = {
            "adler32": checksums.hex32(self._adler),
            "md5": self._md5.hexdigest(),
            "sha256": self._sha256.hexdigest(),
        }
        if self._crc32c is not None:
            values["crc32c"] = checksums.hex32(self._crc32c)
        return values


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
        if isinstance(inner, KeepsMd5):  # the local folder's xattr: this md5, no 2nd pass
            inner.md5_from(lambda: self.values.get("md5"))
        self._hasher = Hasher()
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
        self._hasher.feed(data)
        self._inner.write(data)

    def commit(self) -> Entry:
        self.values = self._hasher.finish()
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
        try:
            self._inner.abort()
        finally:
            self._hasher.settle()  # no thread left behind (a block or two to finish at most)


def digests_of(data: bytes) -> dict[str, str]:
    """md5, adler32 and sha-256 of bytes already in memory (hex, adapter names)."""
    hasher = Hasher()
    hasher.update(data)
    return hasher.finish()
