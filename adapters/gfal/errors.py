"""How gfal2's errors become the adapter error tree (adapters/base.py).

A ``gfal2.GError`` (and a ``RawError`` from pread.py) carries an errno-like ``code`` and
a message; both plugins put their HTTP status or XRootD's words in the message. The order
of the checks is the mapping::

    ENOENT, EEXIST, ENOTDIR, EISDIR     -> adapters.common's errno table
    "HTTP 404"                          -> NotFound
    401 / "unauthorized" in the message -> AuthenticationFailed
    EACCES, EPERM, EROFS, "HTTP 403"    -> PermissionDenied (the errno table)
    ETIMEDOUT, "timed out"              -> BackendTimeout
    ECONNREFUSED..., "could not connect" -> BackendUnavailable
    ENAMETOOLONG                        -> InvalidPath (the errno table)
    EOPNOTSUPP, ENOSYS                  -> NotSupported
    "HTTP 5xx"                          -> BackendUnavailable
    anything else                       -> StorageError

Messages lose their query strings (XRootD's CGI carries the token) and every secret of
the view before they are shown, and the original is never chained: it holds the URL.
"""

from __future__ import annotations

import errno
import re
from typing import Any
from urllib.parse import quote

from adapters.base import (
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    NotSupported,
    StorageError,
)
from adapters.common import errno_error, strerror

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


def code_of(exc: Any) -> int:
    """The errno-like code of a ``GError`` (0 when it has none)."""
    return int(getattr(exc, "code", 0) or 0)


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
    code = code_of(exc)
    message = clean_message(str(getattr(exc, "message", "") or exc), secrets)
    shown = path or "/"
    if code == errno.ENOENT or "HTTP 404" in message:
        return _table(errno.ENOENT, path)
    if code in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return _table(code, path)
    if _AUTH.search(message):
        return AuthenticationFailed(f"{shown}: the storage element rejected the credential")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS) or "HTTP 403" in message:
        return _table(errno.EACCES, path)
    if code in _TIMEOUT or re.search(r"timed? ?out|operation expired", message, re.I):
        return BackendTimeout(f"{shown}: the storage element did not answer in time")
    if code in _UNAVAILABLE or re.search(r"could not connect|connection refused", message, re.I):
        return BackendUnavailable(f"{shown}: the storage element cannot be reached ({message})")
    if code == errno.ENAMETOOLONG:
        return _table(code, path)
    if code in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EPROTONOSUPPORT):
        return NotSupported(f"{shown}: not supported by the storage element ({message})")
    if _HTTP5XX.search(message):
        return BackendUnavailable(f"{shown}: the storage element failed ({message})")
    return StorageError(f"{shown}: {message or strerror(code)}")


def _table(code: int, path: str) -> StorageError:
    error = errno_error(code, path)
    assert error is not None, code  # only codes of the table are passed
    return error


def is_ambiguous(exc: Any) -> bool:
    """XRootD answers ENODEV and XrdHttp answers 500 when a path goes *below a file*
    (``file/child``); only a parent lookup tells that apart from a real failure."""
    code = code_of(exc)
    return code in (errno.ENODEV, errno.EIO, errno.EILSEQ)
