"""The real servers of the test suite, run by the project's own scripts
(scripts/testbeds/<name>.sh: install | start | stop | status | path)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTBEDS = REPO / "scripts" / "testbeds"


def run_testbed(name: str, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(TESTBEDS / f"{name}.sh"), command],
        capture_output=True,
        text=True,
        timeout=300,
    )


def ensure_started(name: str) -> bool:
    """Start a testbed; returns whether it was already running (then leave it on)."""
    was_running = run_testbed(name, "status").returncode == 0
    started = run_testbed(name, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    return was_running


@contextmanager
def running_testbed(name: str) -> Iterator[None]:
    """The testbed runs inside the block; one someone else started is left running."""
    was_running = ensure_started(name)
    try:
        yield
    finally:
        if not was_running:
            run_testbed(name, "stop")
