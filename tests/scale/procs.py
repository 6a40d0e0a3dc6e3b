"""Real ``fedgate serve`` processes for the scale tests: a config file, a port, a log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

FEDGATE = str(Path(sys.executable).parent / "fedgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(
    path: Path, state_dir: Path, mounts: dict[str, dict[str, Any]], database_url: str = ""
) -> Path:
    lines = ["[server]", f"state_dir = {json.dumps(str(state_dir))}", 'api_prefix = "/rest"']
    if database_url:
        lines.append(f"database_url = {json.dumps(database_url)}")
    for name, opts in mounts.items():
        lines.append(f"\n[mounts.{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in opts.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(config: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run a ``fedgate`` admin command against the same config; returns its stdout."""
    res = subprocess.run(
        [FEDGATE, "--config", str(config), *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0:
        raise RuntimeError(f"fedgate {' '.join(args)} failed: {res.stderr.strip()[-500:]}")
    return res.stdout


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return self.url + "/rest"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise


def serve(
    config: Path, env: dict[str, str], log: Path, *args: str, port: int | None = None
) -> Server:
    """Start ``fedgate serve`` and wait until /healthz answers."""
    port = port or free_port()
    out = open(log, "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [FEDGATE, "--config", str(config), "serve", "--port", str(port), *args],
        env={**os.environ, **env},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    server = Server(proc, port, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fedgate serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"fedgate serve did not start: {log.read_text()[-2000:]}")
