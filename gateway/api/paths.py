"""CARMIN path validation: one strict normal form before anything touches a backend.

A ``completePath`` is ``<mount>/<inner path>``. The rules (docs/decisions.md explains why
each one exists):

* one trailing slash is ignored; empty segments (``a//b``), ``.`` and ``..`` are refused;
* percent-encoded ``/``, ``\\`` or NUL in the raw URL are refused (they would change the
  path's shape after decoding); ``%2e%2e`` decodes to ``..`` and is refused as such;
* backslash, NUL and other control characters are refused anywhere;
* a segment may not end with a dot or a space (Windows/SMB aliasing tricks);
* names must be in Unicode NFC form, so two "twins" can never name two files;
* at most 255 bytes per segment and 4096 bytes in all (UTF-8).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from gateway.errors import CarminError, E

MAX_SEGMENT = 255
MAX_PATH = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")
_BAD_ENCODED = re.compile(rb"%(2f|5c|00)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CarminPath:
    mount: str  # "" for the virtual root that lists the mounts
    inner: str = ""  # "" for the mount's root, else "a/b/c"

    @property
    def platform_path(self) -> str:
        if not self.mount:
            return "/"
        return f"/{self.mount}/{self.inner}" if self.inner else f"/{self.mount}"

    @property
    def is_root(self) -> bool:
        return not self.mount

    def child(self, name: str) -> CarminPath:
        return CarminPath(self.mount, f"{self.inner}/{name}" if self.inner else name)


def _bad(reason: str) -> CarminError:
    return CarminError(E.BAD_PATH, f"invalid path: {reason}")


def check_raw(raw_path: bytes) -> None:
    """Refuse encoded separators, and escapes that are not UTF-8, in the undecoded URL
    path (the server decodes those to U+FFFD, so two URLs would name one file)."""
    if _BAD_ENCODED.search(raw_path):
        raise _bad("encoded '/', '\\' or NUL is not allowed")
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("not valid UTF-8") from None


def parse(complete_path: str) -> CarminPath:
    text = complete_path
    if text.startswith("/"):
        text = text[1:]
    if text.endswith("/"):
        text = text[:-1]
    if not text:
        return CarminPath("", "")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PATH:
        raise _bad(f"longer than {MAX_PATH} bytes")
    if _CONTROL.search(text):
        raise _bad("control characters and backslashes are not allowed")
    segments = text.split("/")
    for seg in segments:
        if seg in ("", ".", ".."):
            raise _bad("empty, '.' and '..' segments are not allowed")
        if seg.endswith((".", " ")):
            raise _bad("a name may not end with a dot or a space")
        try:
            encoded = seg.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("not valid UTF-8") from None
        if len(encoded) > MAX_SEGMENT:
            raise _bad(f"a name is longer than {MAX_SEGMENT} bytes")
        if unicodedata.normalize("NFC", seg) != seg:
            raise _bad("names must be in Unicode NFC form")
    return CarminPath(segments[0], "/".join(segments[1:]))


def parse_scope_path(path: str) -> CarminPath:
    """A scope or platform path (``/mount/a/b``) in the same normal form."""
    return parse(path)
