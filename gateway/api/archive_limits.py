"""Counting an uploaded archive's entries and sizes cheaply, before the real parsers run.

An archive's cost to the gateway must follow the limits (``max_archive_entries``,
``max_archive_bytes``), not what the archive claims: 300,000 empty tar entries fit in
2 MB of gzip, and both standard parsers pay per entry before anything can refuse —
``zipfile`` builds an object for every central directory entry when it opens an archive,
and ``tarfile`` runs pure Python on each header (docs/decisions.md has the cost). So:

* a zip's central directory is walked header by header (46 fixed bytes, then the name,
  extra field and comment) and the walk stops at the first limit passed;
* a tar (plain, gzip, bzip2 or xz) is decompressed in bounded pieces and its 512-byte
  headers are counted the same way (a few µs each), skipping the data blocks by the
  size each header declares.

The tar scan also reads the compressed stream to its end, which checks its checksum
(gzip's CRC-32, xz's check): tarfile stops at the end-of-archive blocks and never would,
so a damaged file inside a tar.gz used to be written as if it were good. Both scans only
ever refuse on what they counted for certain. A tar header this quick scan does
not understand (a bad checksum, a size held in a PAX record) ends the scan without a
verdict, and tarfile's own reading, which counts as it goes too (gateway/api/archive.py),
decides; the scan is an early refusal, not the only check.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Iterator

from gateway.errors import CarminError, E

PIECE = 1024 * 1024  # decompressed bytes held at a time by the tar scan
_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
# Extension headers (PAX, GNU long names) describe the next entry: not entries themselves.
_EXTENSION_TYPES = frozenset(b"xgLK")
_FILE_TYPES = frozenset(b"07\x00")


class UnsafeArchive(CarminError):
    def __init__(self, message: str) -> None:
        super().__init__(E.BAD_ARCHIVE, message)


class Tally:
    """Entries and declared bytes so far; raises at the first limit passed."""

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.entries = 0
        self.bytes = 0

    def add(self, size: int) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise UnsafeArchive(f"archive has more than {self.max_entries} entries")
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise UnsafeArchive(f"archive expands to more than the {self.max_bytes}-byte limit")


# --- zip ----------------------------------------------------------------------------------

_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL_HEADER = b"PK\x01\x02"
_EOCD_SEARCH = 22 + 0xFFFF  # the end record, then at most a 64 KiB comment


def count_zip_directory(data: bytes, tally: Tally) -> None:
    """Count a zip's central directory entries and their declared sizes, one header at a
    time. Sizes held in zip64 extra fields (entries past 4 GiB) are counted from
    zipfile's entries afterwards, once their number is known to be within the limit."""
    end = data.rfind(_EOCD, max(0, len(data) - _EOCD_SEARCH))
    if end < 0:
        raise UnsafeArchive("not a readable zip archive: no end of central directory")
    try:
        (size,) = struct.unpack_from("<I", data, end + 12)
        if size == 0xFFFFFFFF or data[max(0, end - 20) : end - 16] == _ZIP64_LOCATOR:
            end -= 20 + 56  # the zip64 locator, and the zip64 end record before it
            if end < 0 or data[end : end + 4] != _ZIP64_EOCD:
                raise UnsafeArchive("not a readable zip archive: bad zip64 end record")
            (size,) = struct.unpack_from("<Q", data, end + 40)
        pos = end - size
        if pos < 0:
            raise UnsafeArchive("not a readable zip archive: central directory out of bounds")
        while pos < end:
            if data[pos : pos + 4] != _CENTRAL_HEADER or pos + 46 > end:
                raise UnsafeArchive("not a readable zip archive: corrupt central directory")
            (declared,) = struct.unpack_from("<I", data, pos + 24)
            name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
            tally.add(0 if declared == 0xFFFFFFFF else declared)
            pos += 46 + name_len + extra_len + comment_len
    except struct.error:
        raise UnsafeArchive("not a readable zip archive: truncated") from None


# --- tar ----------------------------------------------------------------------------------


def _decompressed(data: bytes) -> Iterator[bytes]:
    """The tar stream inside ``data`` (gzip, bzip2, xz or none), PIECE bytes at a time."""
    if data[:2] == b"\x1f\x8b":
        gz = zlib.decompressobj(31)
        view, pos = memoryview(data), 0
        while not gz.eof:
            if gz.unconsumed_tail:
                piece = gz.decompress(gz.unconsumed_tail, PIECE)
            elif pos < len(view):
                piece = gz.decompress(view[pos : pos + 65536], PIECE)
                pos += 65536
            else:
                raise EOFError("the gzip stream is truncated")
            if piece:
                yield piece
        return
    other: bz2.BZ2Decompressor | lzma.LZMADecompressor
    if data[:3] == b"BZh":
        other = bz2.BZ2Decompressor()
    elif data[:6] == b"\xfd7zXZ\x00":
        other = lzma.LZMADecompressor()
    else:
        for start in range(0, len(data), PIECE):
            yield data[start : start + PIECE]
        return
    pending = data
    while not other.eof:
        piece = other.decompress(pending, PIECE)
        pending = b""
        if piece:
            yield piece
        elif other.needs_input:
            raise EOFError("the compressed stream is truncated")


def _declared_size(header: bytes) -> int | None:
    """The size field of a tar header (octal, or GNU base-256), None if unreadable."""
    field = header[124:136]
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    digits = field.split(b"\x00", 1)[0].strip()
    try:
        return int(digits, 8) if digits else 0
    except ValueError:
        return None


def _checksum_ok(header: bytes) -> bool:
    digits = header[148:156].split(b"\x00", 1)[0].strip()
    try:
        stored = int(digits, 8)
    except ValueError:
        return False
    # The checksum is computed with its own field taken as eight spaces.
    return stored == sum(header[:148]) + 8 * 32 + sum(header[156:])


def scan_tar(data: bytes, tally: Tally) -> None:
    """Count a tar's entries and declared file sizes header by header, raising at the
    first limit passed; return quietly at the end, or at anything it does not follow."""
    pieces = _decompressed(data)
    try:
        _count_headers(pieces, tally)
        for _ in pieces:
            pass  # the rest of the stream, so that its checksum (gzip, xz) is checked too
    except (zlib.error, lzma.LZMAError, OSError, EOFError) as exc:
        # tarfile stops at the end-of-archive blocks and would never check it: a damaged
        # file inside would be written as if it were good.
        raise UnsafeArchive(f"the archive is damaged ({exc})") from None


def _count_headers(pieces: Iterator[bytes], tally: Tally) -> None:
    extensions = 0
    buf, pos, skip = b"", 0, 0
    for piece in pieces:
        buf, pos = buf[pos:] + piece, 0
        while True:
            if skip:
                step = min(skip, len(buf) - pos)
                pos, skip = pos + step, skip - step
                if skip:
                    break
            if len(buf) - pos < _BLOCK:
                break
            header = buf[pos : pos + _BLOCK]
            pos += _BLOCK
            if header == _ZERO_BLOCK:
                return  # the end of the archive (as tarfile reads it)
            size = _declared_size(header)
            if size is None or not _checksum_ok(header):
                return  # not a header this scan understands: tarfile decides
            kind = header[156]
            if kind in _EXTENSION_TYPES:
                extensions += 1  # bounded too: no endless run of extension headers
                if extensions > tally.max_entries:
                    raise UnsafeArchive(f"archive has more than {tally.max_entries} entries")
            else:
                tally.add(size if kind in _FILE_TYPES else 0)
            skip = -(-size // _BLOCK) * _BLOCK
