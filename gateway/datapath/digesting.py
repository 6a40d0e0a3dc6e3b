"""Digests computed while an upload streams: md5, adler32, sha-256, crc32c in one pass.

``DigestingWriter`` wraps any storage Writer (adapters.base.Writer). From the second
block of an upload on, each block handed to ``write`` goes to the storage writer at once
and to a hashing thread of the upload's own (a WriteBehind, one block queued at most):
the hashing runs on another core while the writer's thread copies the block into the
page cache or a part buffer, instead of after it. Blocks are ``bytes``, which nobody can
change while the thread hashes them; any other buffer is copied first, since its owner
may reuse it once ``write`` returns. A one-block upload is hashed in line: no thread for
a small file. The local folder's writer hashes md5 itself, for its xattr
(adapters.base.HashesMd5): its value is taken, not computed twice, and that writer's
thread and the hashing thread then carry about the same work.

``commit`` waits for the hashing thread, compares what the client announced
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
from adapters.base import ChecksumMismatch, Entry, HashesMd5, Writer
from gateway.datapath.socket_receive import WriteBehind

log = logging.getLogger("fedgate")

Keep = Callable[[dict[str, str], Entry], None]


class Hasher:
    """md5, adler32, sha-256 and crc32c (adapters/checksums.py: where its C extension is
    installed) of a byte stream fed in order.

    ``md5=False``: someone else hashes md5 (the local folder's writer does, for its
    xattr): one md5 pass per upload, not two -- md5 is the slowest of the three."""

    def __init__(self, md5: bool = True) -> None:
        self._md5: Any = hashlib.md5(usedforsecurity=False) if md5 else None
        self._sha256 = hashlib.sha256()
        self._adler = checksums.ADLER32_START
        self._crc32c = checksums.CRC32C_START if checksums.CRC32C_FAST else None

    def update(self, data: bytes) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        self._sha256.update(data)
        self._adler = checksums.adler32(data, self._adler)
        if self._crc32c is not None:
            self._crc32c = checksums.crc32c(data, self._crc32c)

    def finish(self) -> dict[str, str]:
        """The lowercase hex digests of everything fed (names as the adapters spell them)."""
        values = {
            "adler32": checksums.hex32(self._adler),
            "sha256": self._sha256.hexdigest(),
        }
        if self._crc32c is not None:
            values["crc32c"] = checksums.hex32(self._crc32c)
        if self._md5 is not None:
            values["md5"] = self._md5.hexdigest()
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
        # A writer that hashes md5 itself (adapters.base.HashesMd5: the local folder's).
        self._own_md5: Callable[[], str | None] | None = (
            inner.md5_hexdigest if isinstance(inner, HashesMd5) else None
        )
        self._hasher = Hasher(md5=self._own_md5 is None)
        self._behind: WriteBehind | None = None  # the hashing thread, from the 2nd block
        self._blocks = 0
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
        if type(data) is not bytes:
            data = bytes(data)  # a buffer its owner may refill once write returns
        self._blocks += 1
        if self._blocks == 1:
            self._hasher.update(data)  # in line: most uploads are one block
        else:
            if self._behind is None:
                self._behind = WriteBehind(self._hasher.update, name="fedgate-digest")
            self._behind.put(data)
        self._inner.write(data)

    def _hashed(self) -> BaseException | None:
        """Until the hashing thread has seen every block and returned; its error."""
        if self._behind is None:
            return None
        behind, self._behind = self._behind, None
        behind.close()
        return behind.error

    def commit(self) -> Entry:
        failed = self._hashed()
        if failed is not None:
            raise failed
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
        try:
            self._inner.abort()
        finally:
            self._hashed()  # no thread left behind (a block or two to finish at most)


def digests_of(data: bytes) -> dict[str, str]:
    """md5, adler32 and sha-256 of bytes already in memory (hex, adapter names)."""
    hasher = Hasher()
    hasher.update(data)
    return hasher.finish()
