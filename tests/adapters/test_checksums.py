"""adapters/checksums.py against the examples IANA registers for the two 32-bit digests,
zlib's adler32, and the streaming fed in pieces of any size."""

from __future__ import annotations

import itertools
import os
import zlib

from adapters import checksums
from adapters.base import streamed_checksum
from gateway.datapath.digesting import Hasher


def test_the_registered_examples() -> None:
    # IANA, HTTP Digest Algorithm Values: ADLER32 of "Wiki", CRC32c of "dog".
    assert checksums.hex32(checksums.adler32(b"Wiki")) == "03da0195"
    assert checksums.hex32(checksums.crc32c(b"dog")) == "0a72a4df"
    assert checksums.hex32(checksums.adler32(b"")) == "00000001"
    assert checksums.hex32(checksums.crc32c(b"")) == "00000000"


def test_pieces_give_the_whole_and_adler32_is_zlibs() -> None:
    data = os.urandom(3 * 1024 * 1024 + 11)
    cuts = (0, 1, 4096, 1024 * 1024 + 3, len(data))
    adler, crc = checksums.ADLER32_START, checksums.CRC32C_START
    for a, b in itertools.pairwise(cuts):
        adler = checksums.adler32(memoryview(data)[a:b], adler)
        crc = checksums.crc32c(memoryview(data)[a:b], crc)  # any buffer, not only bytes
    assert adler == zlib.adler32(data) == checksums.adler32(data)
    assert crc == checksums.crc32c(data)
    assert streamed_checksum(iter([data[:5], data[5:]]), "crc32c") == checksums.hex32(crc)
    assert streamed_checksum(iter([data[:5], data[5:]]), "adler32") == checksums.hex32(adler)


def test_uploads_compute_crc32c_with_the_c_extension() -> None:
    # The pure-Python fallback would cost a core per 10 MB/s: the installed one is C.
    assert checksums.CRC32C_FAST
    hasher = Hasher()
    hasher.update(b"dog")
    assert hasher.finish()["crc32c"] == "0a72a4df"
