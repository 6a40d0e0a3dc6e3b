"""How Girder's answers become the adapter error tree (adapters/base.py).

Girder answers 400 for most failures (a missing path, a taken name, a bad parameter) and
tells them apart only in its message, so a 4xx is kept as :class:`GirderError` for the
caller to interpret where it knows what it asked; the rest is mapped here::

    401                      -> AuthenticationFailed (after one token renewal, session.py)
    403                      -> PermissionDenied
    5xx, no answer           -> BackendUnavailable
    timeout                  -> BackendTimeout
    other 4xx                -> GirderError (a StorageError the caller narrows)
"""

from __future__ import annotations

from adapters.base import AlreadyExists, BackendUnavailable, ParentNotFound, StorageError


class GirderError(StorageError):
    """A 4xx answer the caller interprets (Girder answers 400 for most failures)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def install_hint() -> StorageError:
    return StorageError("the Girder adapter needs girder-client: pip install 'fedgate[girder]'")


def from_status(status: int, message: str, host: str) -> StorageError:
    """The error for a failed REST call (``status`` 0: no HTTP answer at all)."""
    if status >= 500 or status == 0:
        return BackendUnavailable(f"Girder at {host} answered {status}")
    return GirderError(status, message or f"HTTP {status}")


def parent_missing(path: str) -> ParentNotFound:
    parent = path.rsplit("/", 1)[0] if "/" in path else "/"
    return ParentNotFound(f"{parent}: parent directory does not exist")


def write_error(path: str, exc: GirderError) -> StorageError:
    """A refused upload or folder creation, as the caller of ``open_write``/``mkdir`` sees it."""
    if "exists" in exc.message:
        return AlreadyExists(f"{path}: already exists")
    if exc.status == 400 and "not found" in exc.message.lower():
        return parent_missing(path)
    return StorageError(f"{path}: Girder refused the upload: {exc.message}")
