"""How gfal2's errors map to the error tree (adapters/gfal/errors.py), checked on the
mapping itself; what a real SE answers is tested in test_gfal.py."""

from __future__ import annotations

import errno

import pytest

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
from adapters.gfal.errors import translate


class FakeGError(Exception):
    """The shape of ``gfal2.GError``: an errno-like ``code`` and a ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (errno.ENOENT, "", NotFound),
        (0, "Result HTTP 404 : File not found", NotFound),
        # A 404 in the message wins over a code that says something else.
        (errno.EEXIST, "HTTP 404", NotFound),
        (errno.EEXIST, "", AlreadyExists),
        (errno.ENOTDIR, "", NotADirectory),
        (errno.EISDIR, "", IsADirectory),
        # The credential is named before the errno of a refusal.
        (errno.EACCES, "HTTP 401 Unauthorized", AuthenticationFailed),
        (errno.EACCES, "", PermissionDenied),
        (errno.EROFS, "", PermissionDenied),
        (0, "Result HTTP 403 : Permission refused", PermissionDenied),
        (errno.ETIMEDOUT, "", BackendTimeout),
        (0, "Operation expired", BackendTimeout),
        (errno.ECONNREFUSED, "", BackendUnavailable),
        (0, "Could not connect to server", BackendUnavailable),
        # A timeout message says more than a name-length errno.
        (errno.ENAMETOOLONG, "timed out", BackendTimeout),
        (errno.ENAMETOOLONG, "", InvalidPath),
        (errno.EOPNOTSUPP, "", NotSupported),
        (0, "HTTP 503 Service Unavailable", BackendUnavailable),
        (errno.EIO, "", StorageError),
    ],
)
def test_each_error_maps_to_its_class(code: int, message: str, expected: type) -> None:
    error = translate(FakeGError(code, message), "d/f.txt")
    assert type(error) is expected
    assert str(error).startswith("d/f.txt: ")


def test_the_root_is_shown_as_a_slash() -> None:
    assert str(translate(FakeGError(errno.ENOENT, ""), "")) == "/: no such file or directory"


def test_messages_lose_query_strings_and_secrets() -> None:
    token = "s3cr3t/token"
    raw = f"failed: root://se//d/f?authz=Bearer%20{token} and {token} and s3cr3t%2Ftoken"
    error = translate(FakeGError(errno.EIO, raw), "d/f", (token,))
    assert token not in str(error) and "s3cr3t" not in str(error)
    assert "authz" not in str(error)
    assert "<hidden>" in str(error)


def test_an_unknown_code_without_a_message_says_io_error() -> None:
    assert str(translate(FakeGError(0, ""), "f")) == "f: I/O error"
    assert str(translate(FakeGError(errno.EIO, ""), "f")) == "f: Input/output error"
