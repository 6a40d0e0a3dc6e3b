"""glibc malloc settings for a process that moves large buffers between threads.

Two effects of glibc's defaults cost the gateway most of its CPU on uploads:

- Every request-body message (64–256 KiB, allocated by uvloop and httptools and freed a
  moment later) sits above the default 128 KiB mmap threshold or lands at the top of the
  heap, past the 128 KiB trim threshold: glibc hands the pages back to the kernel on
  free and faults them in again on the next message, and the receive loop becomes
  CPU-bound on page faults.
- One arena per thread (up to 8 per core) keeps chunks freed by the event loop mapped in
  the worker thread that allocated them: parallel downloads peak higher than with two
  arenas.

The figures (faults, CPU and memory before and after) are in docs/decisions.md.

Fixed thresholds trade a little resident memory (at most TRIM_THRESHOLD kept free at the
top of each of the ARENA_MAX arenas) for not paying the kernel per message. Operators
keep the last word: any MALLOC_* variable of their own leaves that setting alone, and
``FEDGATE_MALLOC_TUNING=0`` disables all of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys

# mallopt parameter numbers (glibc malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 2
# Above every buffer the data path allocates per chunk (4 MiB iRODS reads, up to 1 MiB
# upload blocks and file reads), below the S3 part size: parts come from and go back to
# mmap.
MMAP_THRESHOLD = 5 * 1024 * 1024
TRIM_THRESHOLD = 16 * 1024 * 1024

SETTINGS = (
    ("MALLOC_ARENA_MAX", M_ARENA_MAX, ARENA_MAX),
    ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
    ("MALLOC_TRIM_THRESHOLD_", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
)


def tune_malloc(environ: dict[str, str] | None = None) -> list[str]:
    """Apply the settings above (Linux/glibc only); returns the names applied."""
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or env.get("FEDGATE_MALLOC_TUNING", "1") == "0":
        return []
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return []
    applied = []
    for variable, param, value in SETTINGS:
        if variable in env:
            continue
        with contextlib.suppress(OSError):
            if mallopt(param, value) == 1:
                applied.append(variable)
    return applied
