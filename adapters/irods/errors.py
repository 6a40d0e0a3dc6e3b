"""python-irodsclient and socket errors mapped to the adapter error tree, by iRODS error
name (the exception class names python-irodsclient raises)."""

from __future__ import annotations

from adapters.base import (
    AlreadyExists,
    AuthenticationFailed,
    BackendTimeout,
    BackendUnavailable,
    NotFound,
    NotSupported,
    PermissionDenied,
    StorageError,
)

_AUTH = (
    "CAT_INVALID_AUTHENTICATION",
    "CAT_INVALID_USER",
    "CAT_PASSWORD_EXPIRED",
    "PAM_AUTH_ERR",
    "PAM_AUTH_PASSWORD_FAILED",
    "NonAnonymousLoginWithoutPassword",
)
_DENIED = (
    "CAT_NO_ACCESS_PERMISSION",
    "SYS_NO_API_PRIV",
    "CAT_INSUFFICIENT_PRIVILEGE_LEVEL",
    "CAT_TICKET_INVALID",
    "CAT_TICKET_EXPIRED",
    "CAT_TICKET_USES_EXCEEDED",
)
_MISSING = (
    "USER_FILE_DOES_NOT_EXIST",
    "CAT_NO_ROWS_FOUND",
    "CAT_UNKNOWN_COLLECTION",
    "CAT_UNKNOWN_FILE",
    "DoesNotExist",
    "OBJ_PATH_DOES_NOT_EXIST",
    "NoResultFound",
)
_EXISTS = (
    "CAT_NAME_EXISTS_AS_COLLECTION",
    "CAT_NAME_EXISTS_AS_DATAOBJ",
    "CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME",
    "OVERWRITE_WITHOUT_FORCE_FLAG",
)


def is_named(exc: BaseException, names: tuple[str, ...]) -> bool:
    """Whether ``exc`` is (a subclass of) an iRODS error of one of these names."""
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def translate(exc: BaseException, path: str) -> StorageError:
    """Map a python-irodsclient / socket error to the adapter error tree (no secrets:
    only the mount-relative path and the iRODS error name go into messages)."""
    shown = path or "/"
    if isinstance(exc, StorageError):
        return exc
    if is_named(exc, _AUTH):
        return AuthenticationFailed("iRODS rejected the credential")
    if is_named(exc, _DENIED):
        return PermissionDenied(f"{shown}: permission denied")
    if is_named(exc, _MISSING):
        return NotFound(f"{shown}: no such file or directory")
    if is_named(exc, _EXISTS):
        return AlreadyExists(f"{shown}: already exists")
    if is_named(exc, ("SYS_NOT_SUPPORTED",)):
        return NotSupported(f"{shown}: operation not supported by the iRODS server")
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return BackendTimeout("iRODS server did not answer in time")
    if is_named(exc, ("NetworkException",)) or isinstance(exc, OSError):
        return BackendUnavailable("iRODS server unreachable")
    return StorageError(f"{shown}: iRODS error {type(exc).__name__}")
