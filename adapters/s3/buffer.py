"""Where an S3 upload keeps one part until it is sent: memory within a process-wide
budget, else an anonymous temporary file.

S3 needs a part's whole body before sending it (its length, and over plain HTTP its
SHA-256 for the signature), so each upload holds up to PARTS_IN_FLIGHT parts being sent
and one gathering (8 MiB each by default; adapters/s3/write.py). With 16 parallel
uploads that would be 16 x 5 parts; the budget bounds the total whatever the
parallelism, and a part past it spills to disk instead of growing the gateway. Chunks
are kept as received and read back through a seekable view, so a part is never copied
into one contiguous buffer.
"""

from __future__ import annotations

import io
import tempfile
import threading
from typing import IO

# Bytes of parts held in memory by all uploads together; past it parts go to temporary
# files (page cache, gone before writeback for most). Small on purpose: spilling costs a
# single upload nothing measurable, memory held grows with every parallel upload
# (measured: docs/decisions.md, "Adapter packages").
MEMORY_BUDGET = 4 * 1024 * 1024


class Budget:
    def __init__(self, total: int) -> None:
        self._lock = threading.Lock()
        self.free = total

    def take(self, n: int) -> bool:
        with self._lock:
            if n > self.free:
                return False
            self.free -= n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.free += n


BUDGET = Budget(MEMORY_BUDGET)


class ChunksReader(io.RawIOBase):
    """A seekable, read-only file over a list of byte strings (no joining copy)."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._size = sum(len(c) for c in chunks)
        self._pos = 0
        self._index = 0  # chunk holding _pos, and _pos's offset inside it
        self._offset = 0

    def __len__(self) -> int:
        return self._size - self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(base + offset, self._size))
        self._index, self._offset, left = 0, 0, self._pos
        while self._index < len(self._chunks) and left >= len(self._chunks[self._index]):
            left -= len(self._chunks[self._index])
            self._index += 1
        self._offset = left
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        want = self._size - self._pos if size is None or size < 0 else size
        pieces: list[bytes] = []
        while want > 0 and self._index < len(self._chunks):
            chunk = self._chunks[self._index]
            piece = (
                chunk[self._offset : self._offset + want]
                if self._offset or want < len(chunk)
                else chunk
            )
            pieces.append(piece)
            want -= len(piece)
            self._pos += len(piece)
            self._offset += len(piece)
            if self._offset >= len(chunk):
                self._index, self._offset = self._index + 1, 0
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class PartBuffer:
    """One part's bytes, in memory while the budget allows, else in a temporary file.
    ``release`` must be called once the part is sent or abandoned."""

    def __init__(self, budget: Budget = BUDGET) -> None:
        self._budget = budget
        self._chunks: list[bytes] = []
        self._held = 0  # budget taken by _chunks
        self._file: IO[bytes] | None = None
        self.size = 0

    def add(self, data: bytes) -> None:
        if self._file is None and self._budget.take(len(data)):
            self._chunks.append(bytes(data))
            self._held += len(data)
        else:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by release
                for chunk in self._chunks:
                    self._file.write(chunk)
                self._drop_chunks()
            self._file.write(data)
        self.size += len(data)

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def body(self) -> IO[bytes]:
        """The bytes so far, as a file positioned at 0 (seekable, for signing and retries)."""
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            return self._file
        return ChunksReader(list(self._chunks))  # type: ignore[return-value]

    def _drop_chunks(self) -> None:
        self._chunks = []
        self._budget.give(self._held)
        self._held = 0

    def release(self) -> None:
        self._drop_chunks()
        if self._file is not None:
            self._file.close()
            self._file = None
        self.size = 0
