"""Renaming a finished upload onto its target without ever replacing what is there.

A create-only upload (a token holding ``storage.create`` but not ``storage.modify``) must
not overwrite a file that appeared while its bytes streamed in, so the final step cannot
be ``os.replace``. Linux has ``renameat2(RENAME_NOREPLACE)`` (glibc 2.28+, reached through
ctypes: Python has no binding); filesystems that refuse the flag (EINVAL: some network
and FUSE filesystems) fall back to ``link`` then ``unlink``, which POSIX makes atomic too
(``link`` fails with EEXIST when the name exists, dangling symlinks included).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from collections.abc import Callable

AT_FDCWD = -100
RENAME_NOREPLACE = 1

_Renameat2 = Callable[[int, bytes, int, bytes, int], int]


def _load_renameat2() -> _Renameat2 | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    renameat2: _Renameat2 = fn
    return renameat2


_RENAMEAT2 = _load_renameat2()


def rename_noreplace(src: str, dst: str, use_renameat2: bool = True) -> None:
    """Move ``src`` to ``dst``; FileExistsError (and ``src`` left in place) if ``dst``
    exists. ``use_renameat2=False`` forces the link/unlink path (tests)."""
    if use_renameat2 and _RENAMEAT2 is not None:
        old, new = os.fsencode(src), os.fsencode(dst)
        if _RENAMEAT2(AT_FDCWD, old, AT_FDCWD, new, RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), dst)
    os.link(src, dst)  # EEXIST if anything is there: the check and the create are one call
    with contextlib.suppress(FileNotFoundError):
        os.unlink(src)
