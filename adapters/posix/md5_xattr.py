"""A file's md5 kept in an extended attribute beside it, valid while its size and mtime
hold (the local folder's checksum cache, written by uploads and first requests)."""

from __future__ import annotations

import os

MD5_XATTR = "user.fedgate.md5"


def remember_md5(target: int | str, digest: str) -> None:
    """Keep a file's md5 in an extended attribute, valid while size and mtime hold.

    Hashing a large file costs a second of CPU per GiB; jobs ask for the md5 of every
    input they verify. Written on upload (the hash is computed while the bytes stream
    in) and on first request. Filesystems without user xattrs just recompute."""
    try:
        st = os.stat(target)
        value = f"{st.st_size}:{st.st_mtime_ns}:{digest}".encode()
        os.setxattr(target, MD5_XATTR, value)
    except OSError:
        pass


def recall_md5(full: str) -> str | None:
    try:
        size, mtime_ns, digest = os.getxattr(full, MD5_XATTR).decode().split(":")
        st = os.stat(full)
    except (OSError, ValueError):
        return None
    if int(size) == st.st_size and int(mtime_ns) == st.st_mtime_ns and len(digest) == 32:
        return digest
    return None
