"""Helpers every backend uses, written once: a file's media type, the errno table, and
the cache of per-credential views an adapter keeps.

Why a module of its own and not ``adapters/base.py``: ``base.py`` is the contract (what
the gateway may call and what an adapter raises), read by whoever writes or calls an
adapter; this module is implementation shared by the backend packages, which the gateway
never imports. Keeping them apart keeps the contract one screen shorter and lets the
helpers change without touching it. It imports only ``adapters.base``, so any backend
module can import it without a cycle.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import mimetypes
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from adapters.base import (
    AlreadyExists,
    InvalidPath,
    IsADirectory,
    NoSpace,
    NotADirectory,
    NotFound,
    PermissionDenied,
    StorageError,
)

__all__ = [
    "ERRNO_ERRORS",
    "OCTET_STREAM",
    "ViewCache",
    "credential_key",
    "errno_error",
    "mime_type",
]

log = logging.getLogger("adapters")

OCTET_STREAM = "application/octet-stream"


def mime_type(name: str) -> str:
    """The media type guessed from a file name's extension (non-strict: the common
    unofficial types too), ``application/octet-stream`` when there is none."""
    return mimetypes.guess_type(name, strict=False)[0] or OCTET_STREAM


# What an errno from a file-system-like call means in the error tree, and the words that
# follow the path in its message. Timeouts and network errnos are not here: on a local
# disk they do not occur, and a remote backend decides how a message refines them.
ERRNO_ERRORS: dict[int, tuple[type[StorageError], str]] = {
    errno.ENOENT: (NotFound, "no such file or directory"),
    errno.EEXIST: (AlreadyExists, "already exists"),
    errno.ENOTDIR: (NotADirectory, "not a directory"),
    errno.EISDIR: (IsADirectory, "is a directory"),
    errno.EACCES: (PermissionDenied, "permission denied"),
    errno.EPERM: (PermissionDenied, "permission denied"),
    errno.EROFS: (PermissionDenied, "permission denied"),
    errno.ENAMETOOLONG: (InvalidPath, "name too long"),
    errno.ENOSPC: (NoSpace, "no space left on the storage"),
    errno.EDQUOT: (NoSpace, "the storage quota is exceeded"),
}


def errno_error(code: int | None, path: str) -> StorageError | None:
    """The error for ``code`` on ``path`` (``""`` shows as ``/``), or None when the
    table has no entry and the caller decides (a generic StorageError, a timeout...)."""
    entry = ERRNO_ERRORS.get(code or 0)
    if entry is None:
        return None
    cls, words = entry
    return cls(f"{path or '/'}: {words}")


def strerror(code: int | None) -> str:
    """``os.strerror`` for a real code, ``"I/O error"`` for none."""
    return os.strerror(code) if code else "I/O error"


def credential_key(*parts: str) -> str:
    """A cache key for a credential: a digest of its parts, so the cache never holds
    (and a heap dump never shows) the secret as a dictionary key."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


V = TypeVar("V")


class ViewCache(Generic[V]):
    """What an adapter keeps per credential (a view, a client, a session), shared by
    every request with that credential, least recently used first out.

    * At most ``max_entries`` values; the least recently used one is evicted, and with
      ``idle_timeout`` (seconds) so is any value unused that long.
    * An evicted value is closed with ``close``, unless ``busy(value)`` says a request is
      still using it: it is then dropped without closing, and its connections go with it
      when the request ends. Closing must leave a value usable by a request that still
      holds it (a boto3 client reopens its pools, a gfal2 pool makes new contexts).
    * ``get`` builds a missing value with ``make`` outside the lock (a client may take
      milliseconds to build); if another thread stored one meanwhile, that one wins and
      the new one is closed.
    * ``close_all`` empties the cache and closes every value (the adapter's ``close``).

    Keys come from :func:`credential_key`; values are closed outside the lock, so a slow
    close never holds up another request's ``get``.
    """

    def __init__(
        self,
        close: Callable[[V], None],
        *,
        max_entries: int = 128,
        idle_timeout: float | None = None,
        busy: Callable[[V], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._close = close
        self._max = max_entries
        self._idle = idle_timeout
        self._busy = busy
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[V, float]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: str, make: Callable[[], V]) -> V:
        now = self._clock()
        with self._lock:
            evicted = self._expire(now)
            found = self._entries.get(key)
            if found is not None:
                self._entries[key] = (found[0], now)
                self._entries.move_to_end(key)
        if found is not None:
            self._dispose(evicted)
            return found[0]
        value = make()
        with self._lock:
            raced = self._entries.get(key)
            if raced is not None:
                evicted.append(value)  # another thread's value is already in use
                value = raced[0]
            self._entries[key] = (value, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                evicted.append(self._entries.popitem(last=False)[1][0])
        self._dispose(evicted)
        return value

    def keys(self) -> list[str]:
        """The keys held now (credential digests), least recently used first."""
        with self._lock:
            return list(self._entries)

    def newest(self) -> V | None:
        """The most recently used value, if any."""
        with self._lock:
            if not self._entries:
                return None
            return next(reversed(self._entries.values()))[0]

    def close_all(self) -> None:
        with self._lock:
            values = [value for value, _ in self._entries.values()]
            self._entries.clear()
        for value in values:
            self._close_quietly(value)

    def _expire(self, now: float) -> list[V]:
        """Pop the values idle past the timeout (the caller holds the lock). A busy one
        stays: closing a session that is streaming would cut the stream."""
        if self._idle is None:
            return []
        expired: list[V] = []
        for key, (value, last) in list(self._entries.items()):
            if now - last > self._idle and not (self._busy is not None and self._busy(value)):
                del self._entries[key]
                expired.append(value)
        return expired

    def _dispose(self, values: list[V]) -> None:
        for value in values:
            if self._busy is not None and self._busy(value):
                continue  # a request still uses it: dropped, not closed under it
            self._close_quietly(value)

    def _close_quietly(self, value: V) -> None:
        try:
            self._close(value)
        except Exception:  # the value is gone from the cache either way
            log.debug("closing a cached credential view failed", exc_info=True)
