"""HTTP Range for streamed content (RFC 9110 §14).

Starlette's FileResponse handles ranges for local files but answers errors in plain
text and needs a file on disk; fedgate streams from backends of every kind and must
answer CARMIN-shaped errors, so this small layer decides, once, what to send:

* no Range, an unparsable one, a non-``bytes`` unit, or several ranges → the whole
  content with 200 (a server may ignore Range; multipart/byteranges is not worth its
  complexity for data transfer clients, which ask for one range at a time);
* ``If-Range`` that does not match the current validator → the whole content with 200;
* one satisfiable range → 206 with ``Content-Range``;
* one unsatisfiable range (first byte at or past the end) → 416 with
  ``Content-Range: bytes */size``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"\s*(\d*)\s*-\s*(\d*)\s*")  # applied with fullmatch


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


class Unsatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for a {size}-byte file")
        self.size = size


def parse_range(
    header: str | None,
    size: int,
    if_range: str | None = None,
    validators: tuple[str, ...] = (),
) -> ByteRange | None:
    """The single range to serve, or None for the whole content. Raises Unsatisfiable."""
    if not header:
        return None
    if if_range is not None and (if_range.startswith("W/") or if_range not in validators):
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec or "," in spec:
        return None
    m = _SPEC.fullmatch(spec)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise Unsatisfiable(size)
        # RFC 9110 14.1.1: a non-zero suffix is satisfiable even on an empty file; the
        # whole (empty) representation answers it, with 200 (as nginx does).
        return ByteRange(max(0, size - n), size) if size else None
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None  # syntactically invalid: ignore the header
    if start >= size:
        raise Unsatisfiable(size)
    return ByteRange(start, end)
