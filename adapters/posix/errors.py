"""Local file-system errors (OSError) mapped to the adapter error tree: the shared errno
table (adapters/common.py) plus what only a local folder means."""

from __future__ import annotations

import errno
import os

from adapters.base import BackendUnavailable, NotFound, StorageError
from adapters.common import errno_error, strerror


def translate(exc: OSError, path: str, root: str | None = None) -> StorageError:
    """The error for ``exc`` on ``path``; with ``root``, a missing file whose mount root
    is gone too is the mount's failure, not the caller's 404."""
    code = exc.errno
    shown = path or "/"
    if code == errno.ENOENT and root is not None and not os.path.isdir(root):
        # The operator's folder is gone (unmounted, deleted): not the caller's 404.
        return BackendUnavailable("the mount's root folder is missing on the gateway")
    if code == errno.ELOOP:
        # A link loop (or a chain too long) under the caller's path: nothing is there to
        # serve, and it is the folder's content, not the gateway, that is at fault.
        return NotFound(f"{shown}: too many levels of symbolic links")
    return errno_error(code, path) or StorageError(f"{shown}: {strerror(code)}")
