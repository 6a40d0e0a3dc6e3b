"""A folder on local disk as a mount.

Options (the mount's TOML table): ``root`` (the folder, required) and ``create`` (make
it at start when missing, default false). No credential: the gateway reads and writes
with its own file access, so a token's scope is the only check (``uses_credentials``).

Uploads are written into a staging folder inside the mount root (same filesystem, so the
final rename is atomic) and renamed over the target only once complete; an exclusive
(create-only) upload is renamed with RENAME_NOREPLACE instead of ``os.replace``, so a file
that appeared meanwhile is kept (adapters/posix/noreplace.py). The staging folder is
hidden from listings and unreachable through paths, links into it included. Each process
stages in its own subfolder (host + pid); a process that starts removes the subfolders of
dead processes on the same host, so uploads cut by a crash leave no leftovers.

Symbolic links already on the disk are followed only when they stay inside the root.
``real_path`` tells the gateway where a path lands, so that it authorises that too
(adapters.base.LinkResolver), and a listed link carries its resolved path
(``Entry.link_target``) for the same check.
"""

from adapters.posix.adapter import PosixAdapter, create
from adapters.posix.md5_xattr import MD5_XATTR
from adapters.posix.noreplace import rename_noreplace
from adapters.posix.storage import CHUNK, STAGING, PosixStorage
from adapters.posix.write import PosixWriter

__all__ = [
    "CHUNK",
    "MD5_XATTR",
    "STAGING",
    "PosixAdapter",
    "PosixStorage",
    "PosixWriter",
    "create",
    "rename_noreplace",
]
