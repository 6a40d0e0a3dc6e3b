"""gfal2 plumbing for adapters/gfal.py: lazy import, per-credential context pools, URLs,
and the translation of gfal2 errors (``GError``: an errno-like ``code`` and a message) into
the adapter error tree.

gfal2 contexts must not be used by two threads at once (a context carries per-plugin
state and credentials), but creating one is cheap (~15 ms, plugins are loaded once per
process). A :class:`ContextPool` therefore lends each operation its own context and keeps
a few idle ones; when every context is lent out it creates another instead of blocking,
so nested use (a recursive delete listing while it unlinks) cannot deadlock.
"""

from __future__ import annotations

import errno
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote, urlsplit

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
    NotSupported,
    PermissionDenied,
    StorageError,
)

INSTALL_HINT = (
    "the gfal mount type needs gfal2's Python module: apt-get install python3-gfal2 "
    "gfal2-plugin-xrootd gfal2-plugin-http, then run scripts/gfal2-venv.sh to expose it to the venv"
)

HTTP_SCHEMES = frozenset({"http", "https", "dav", "davs"})
XROOTD_SCHEMES = frozenset({"root", "xroot", "roots", "xroots"})

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


# --- URLs ---------------------------------------------------------------------------------


def normalise_base_url(url: str) -> tuple[str, str]:
    """(base URL without trailing slash, scheme). The root path is kept as written:
    XRootD wants ``root://host:port//abs/path``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES | XROOTD_SCHEMES:
        raise ValueError(
            f"gfal base_url scheme {scheme!r} is not supported "
            "(use root://, xroot://, http://, https://, dav:// or davs://)"
        )
    if not parts.netloc:
        raise ValueError("gfal base_url needs a host")
    if parts.query or parts.fragment:
        raise ValueError("gfal base_url must not carry a query string or fragment")
    if parts.username or parts.password:
        raise ValueError("gfal base_url must not carry credentials; use the token option")
    base = url.rstrip("/")
    if scheme in XROOTD_SCHEMES and not base.split("://", 1)[1].partition("/")[2]:
        base += "/"  # root://host:port/ + /path below
    return base, scheme


def path_url(base: str, path: str) -> str:
    """The SE URL of a normalised mount path, each segment percent-encoded.

    Both gfal2 plugins decode percent-escapes once, so encoding makes spaces, ``%``, ``#``
    and non-ASCII names round-trip. ``?`` cannot: XrdHttp and the xrootd plugin both cut
    the path at a decoded ``?``, so such names are refused rather than silently truncated."""
    if not path:
        return base
    if "?" in path:
        raise InvalidPath(f"{path}: '?' cannot be stored on this storage element")
    return base + "/" + "/".join(quote(seg, safe="") for seg in path.split("/"))


def with_authz(url: str, token: str | None) -> str:
    """root:// ignores gfal2's BEARER credentials; XRootD takes the token as CGI."""
    if not token:
        return url
    return f"{url}?authz={quote('Bearer ' + token, safe='')}"


# --- errors -------------------------------------------------------------------------------

_QUERY = re.compile(r"\?[^\s)\"']*")
_UNAVAILABLE = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.EHOSTUNREACH,
    errno.EHOSTDOWN,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.ENOTCONN,
    errno.EPIPE,
    errno.ECOMM,
    errno.EAGAIN,
}
_TIMEOUT = {errno.ETIMEDOUT, errno.ETIME}
_AUTH = re.compile(r"\b401\b|unauthori[sz]ed|authentication fail|auth(entication)? failed", re.I)
_HTTP5XX = re.compile(r"HTTP 5\d\d")


def clean_message(message: str, secrets: tuple[str, ...] = ()) -> str:
    """A gfal2 message fit for an exception: no query strings (XRootD CGI carries the
    token), no secret, no URL noise."""
    text = _QUERY.sub("", message or "")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<hidden>").replace(quote(secret, safe=""), "<hidden>")
    return " ".join(text.split())[:300]


def translate(exc: Any, path: str, secrets: tuple[str, ...] = ()) -> StorageError:
    """Map a ``gfal2.GError`` to the error tree. Callers raise the result ``from None``:
    the original carries the full URL, which for root:// includes the token."""
    code = int(getattr(exc, "code", 0) or 0)
    message = clean_message(str(getattr(exc, "message", "") or exc), secrets)
    shown = path or "/"
    if code == errno.ENOENT or "HTTP 404" in message:
        return NotFound(f"{shown}: no such file or directory")
    if code == errno.EEXIST:
        return AlreadyExists(f"{shown}: already exists")
    if code == errno.ENOTDIR:
        return NotADirectory(f"{shown}: not a directory")
    if code == errno.EISDIR:
        return IsADirectory(f"{shown}: is a directory")
    if _AUTH.search(message):
        return AuthenticationFailed(f"{shown}: the storage element rejected the credential")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or "HTTP 403" in message:
        return PermissionDenied(f"{shown}: permission denied")
    if code in _TIMEOUT or re.search(r"timed? ?out|operation expired", message, re.I):
        return BackendTimeout(f"{shown}: the storage element did not answer in time")
    if code in _UNAVAILABLE or re.search(r"could not connect|connection refused", message, re.I):
        return BackendUnavailable(f"{shown}: the storage element cannot be reached ({message})")
    if code == errno.ENAMETOOLONG:
        return InvalidPath(f"{shown}: name too long")
    if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EPROTONOSUPPORT):
        return NotSupported(f"{shown}: not supported by the storage element ({message})")
    if _HTTP5XX.search(message):
        return BackendUnavailable(f"{shown}: the storage element failed ({message})")
    detail = message or (os.strerror(code) if code else "I/O error")
    return StorageError(f"{shown}: {detail}")


def is_ambiguous(exc: Any) -> bool:
    """XRootD answers ENODEV and XrdHttp answers 500 when a path goes *below a file*
    (``file/child``); only a parent lookup tells that apart from a real failure."""
    code = int(getattr(exc, "code", 0) or 0)
    return code in (errno.ENODEV, errno.EIO, errno.EILSEQ)


# --- options ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GfalOptions:
    base_url: str
    token: str | None = None
    x509_proxy: str | None = None
    anonymous: bool = False
    timeout: int = 30
    connect_timeout: int = 5
    checksum_timeout: int = 300
    native_checksums: frozenset[str] = frozenset({"adler32", "md5"})
    macaroons: bool = True
    stream_http: bool = True
    raw_reads: bool = True
    insecure: bool = False
    max_idle_contexts: int = 4

    def __repr__(self) -> str:
        return (
            f"GfalOptions(base_url={self.base_url!r}, token=<{'set' if self.token else 'unset'}>)"
        )


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"gfal option {name!r} must be true or false")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"gfal option {name!r} must be a positive integer")
    return value


def parse_options(options: Mapping[str, Any]) -> GfalOptions:
    known = set(GfalOptions.__dataclass_fields__)
    unknown = set(options) - known
    if unknown:
        raise ValueError(f"unknown gfal option(s): {', '.join(sorted(unknown))}")
    if not isinstance(options.get("base_url"), str):
        raise ValueError("gfal option 'base_url' is required")
    kwargs: dict[str, Any] = {"base_url": options["base_url"]}
    for name in ("token", "x509_proxy"):
        if options.get(name):
            kwargs[name] = str(options[name])
    for name in ("anonymous", "macaroons", "insecure", "stream_http", "raw_reads"):
        if name in options:
            kwargs[name] = _bool(options[name], name)
    for name in ("timeout", "connect_timeout", "checksum_timeout", "max_idle_contexts"):
        if name in options:
            kwargs[name] = _int(options[name], name)
    if "native_checksums" in options:
        algs = options["native_checksums"]
        if not isinstance(algs, list | tuple) or not all(isinstance(a, str) for a in algs):
            raise ValueError("gfal option 'native_checksums' must be a list of names")
        kwargs["native_checksums"] = frozenset(a.lower() for a in algs)
    return GfalOptions(**kwargs)
