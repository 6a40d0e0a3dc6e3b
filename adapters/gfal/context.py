"""gfal2 itself: its lazy import, and the pools of contexts each mount view lends out.

gfal2 contexts must not be used by two threads at once (a context carries per-plugin
state and credentials), but creating one is cheap (plugins are loaded once per process;
docs/decisions.md). A :class:`ContextPool` therefore lends each operation its own context
and keeps a few idle ones; when every context is lent out it creates another instead of
blocking, so nested use (a recursive delete listing while it unlinks) cannot deadlock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

INSTALL_HINT = (
    "the gfal mount type needs gfal2's Python module: apt-get install python3-gfal2 "
    "gfal2-plugin-xrootd gfal2-plugin-http, then run scripts/gfal2-venv.sh to expose it to the venv"
)

_gfal2: ModuleType | None = None
_import_lock = threading.Lock()


def gfal2_module(connect_timeout: int, request_timeout: int) -> ModuleType:
    """Import gfal2 on first use.

    XRootD's client (XrdCl, under gfal2's xrootd plugin) reads its timeouts from the
    environment once per process, and its defaults retry a refused connection for minutes.
    We set short defaults before the first context exists; values already in the
    environment (an operator's choice) win, and the first mount configured sets them for the
    whole process."""
    global _gfal2
    with _import_lock:
        if _gfal2 is None:
            os.environ.setdefault("XRD_CONNECTIONRETRY", "1")
            os.environ.setdefault("XRD_CONNECTIONWINDOW", str(connect_timeout))
            os.environ.setdefault("XRD_REQUESTTIMEOUT", str(request_timeout))
            # After a stream error XrdCl fails every request to that host at once for
            # this window (1800 s by default): an SE that restarts would stay "down" for
            # half an hour. A few seconds keeps fail-fast without blocking recovery.
            os.environ.setdefault("XRD_STREAMERRORWINDOW", str(max(1, connect_timeout)))
            try:
                import gfal2  # type: ignore[import-not-found,unused-ignore]
            except ImportError as exc:
                raise ImportError(INSTALL_HINT) from exc
            _gfal2 = gfal2
        return _gfal2


class ContextPool:
    """Lends gfal2 contexts configured by ``configure`` (credentials, timeouts)."""

    def __init__(self, factory: Callable[[], Any], max_idle: int = 4) -> None:
        self._factory = factory
        self._max_idle = max_idle
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._factory()

    def release(self, ctx: Any) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(ctx)
        # Otherwise dropped: gfal2 frees a context when its Python object goes.

    @contextmanager
    def lease(self) -> Iterator[Any]:
        ctx = self.acquire()
        try:
            yield ctx
        finally:
            self.release(ctx)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._idle = []


class Lease:
    """A context held across calls (an open file, a listing), released exactly once."""

    def __init__(self, pool: ContextPool) -> None:
        self._pool = pool
        self.ctx: Any = pool.acquire()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._pool.release(self.ctx)
