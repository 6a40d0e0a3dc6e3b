"""Digests computed while an upload streams: md5, adler32 and sha-256 in one pass.

``DigestingWriter`` wraps any storage Writer (adapters.base.Writer). Each block handed
to ``write`` is hashed, then written, in the upload's writer thread: off the event loop,
and beside the socket reads, which another thread does (gateway/datapath/socket_receive.py
WriteBehind, gateway/datapath/block_pipe.py). ``commit`` compares what the client announced
(Content-Digest, Digest, CARMIN's md5), refuses a mismatch before anything is visible
(ChecksumMismatch, the caller aborts), then commits and hands the values to ``keep``
(gateway/api/digests.py stores them).

Why not more threads: on the 2-vCPU test machine (bench/digests.py), hashing sha-256
and adler32 in a thread of their own cost more than twice the CPU of hashing in the
writer's thread, and uploads ran slower, not faster (two busy threads share one core's
execution units there); the figures are in docs/decisions.md.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import zlib
from collections.abc import Callable
from typing import Any

from adapters.base import ChecksumMismatch, Entry, HashesMd5, Writer

log = logging.getLogger("fedgate")

Keep = Callable[[dict[str, str], Entry], None]


class Hasher:
    """md5, adler32 and sha-256 of a byte stream fed in order.

    ``md5=False``: someone else hashes md5 (the local folder's writer does, for its
    xattr): one md5 pass per upload, not two -- md5 is the slowest of the three."""

    def __init__(self, md5: bool = True) -> None:
        self._md5: Any = hashlib.md5(usedforsecurity=False) if md5 else None
        self._sha256 = hashlib.sha256()
        self._adler = 1

    def update(self, data: bytes) -> None:
        if self._md5 is not None:
            self._md5.update(data)
        self._sha256.update(data)
        self._adler = zlib.adler32(data, self._adler)

    def finish(self) -> dict[str, str]:
        """The lowercase hex digests of everything fed (names as the adapters spell them)."""
        values = {
            "adler32": f"{self._adler & 0xFFFFFFFF:08x}",
            "sha256": self._sha256.hexdigest(),
        }
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
        self._inner.abort()


def digests_of(data: bytes) -> dict[str, str]:
    """md5, adler32 and sha-256 of bytes already in memory (hex, adapter names)."""
    hasher = Hasher()
    hasher.update(data)
    return hasher.finish()
