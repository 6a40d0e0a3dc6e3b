"""The two 32-bit checksums the grid and S3 compare, from the libraries that compute them
at memory speed: adler32 from ISA-L (python-isal), crc32c from google-crc32c.

Why not zlib's adler32: on the 2-vCPU test machine it runs at ~3 GB/s on one core, ISA-L's
at ~17 GB/s (SIMD); every upload hashes every byte, so the difference is a quarter of a
CPU-second per GiB. The standard library has no crc32c at all. Both release the GIL on
large buffers, like hashlib, so the hashing thread of an upload runs beside the others.

google-crc32c falls back to pure Python where its C extension is missing (~100× slower):
``CRC32C_FAST`` says whether uploads can afford it; without it crc32c is not computed.
This module is the only one that imports either library.
"""

from __future__ import annotations

import google_crc32c
from isal import isal_zlib

ADLER32_START = 1
CRC32C_START = 0
CRC32C_FAST = google_crc32c.implementation == "c"


def adler32(data: bytes | memoryview, value: int = ADLER32_START) -> int:
    """``value`` carried on over ``data`` (start with ADLER32_START)."""
    return int(isal_zlib.adler32(data, value))


def crc32c(data: bytes | memoryview, value: int = CRC32C_START) -> int:
    """``value`` carried on over ``data`` (start with CRC32C_START)."""
    if not isinstance(data, bytes):
        data = bytes(data)  # the extension takes bytes only, not any buffer
    return int(google_crc32c.extend(value, data))


def hex32(value: int) -> str:
    """A 32-bit checksum as the grid writes it: 8 lowercase hex digits."""
    return f"{value & 0xFFFFFFFF:08x}"
