"""SIGTERM lets running transfers finish (``fedgate serve --graceful-timeout``), on a
real ``fedgate serve`` process."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.scale.procs import cli, serve, write_config

SIZE = 128 * 1024 * 1024


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, dict[str, str], str]:
    data = tmp_path / "data"
    data.mkdir()
    with open(data / "big.bin", "wb") as f:
        block = os.urandom(1024 * 1024)
        for _ in range(SIZE // len(block)):
            f.write(block)
    config = write_config(
        tmp_path / "fedgate.toml",
        tmp_path / "state",
        {"local": {"type": "posix", "root": str(data)}},
    )
    env = {
        "FEDGATE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "FEDGATE_LOG_LEVEL": "INFO",
    }
    key = cli(config, env, "user", "add", "admin", "--admin").strip()
    return config, env, key


def test_sigterm_lets_a_running_download_finish(
    tmp_path: Path, setup: tuple[Path, dict[str, str], str]
) -> None:
    config, env, key = setup
    server = serve(config, env, tmp_path / "serve.log", "--graceful-timeout", "30")
    try:
        digest = hashlib.sha256()
        received = 0
        with (
            httpx.Client(timeout=30) as c,
            c.stream(
                "GET", server.api + "/path/local/big.bin?action=content", headers={"apikey": key}
            ) as r,
        ):
            assert r.status_code == 200
            for i, chunk in enumerate(r.iter_bytes(1024 * 1024)):
                digest.update(chunk)
                received += len(chunk)
                if i == 0:
                    server.proc.send_signal(signal.SIGTERM)
                    time.sleep(0.5)
                    # Shutting down: no new connection is accepted any more...
                    with pytest.raises(httpx.TransportError):
                        httpx.get(server.url + "/healthz", timeout=2)
                    assert server.proc.poll() is None  # ...but it waits for us.
                time.sleep(0.01)  # a slow client: the download outlives the signal
        assert received == SIZE
        expected = hashlib.sha256((tmp_path / "data" / "big.bin").read_bytes()).hexdigest()
        assert digest.hexdigest() == expected
        # uvicorn re-raises the signal it caught once it has shut down cleanly.
        assert server.proc.wait(15) in (0, -signal.SIGTERM)
    finally:
        server.stop(signal.SIGKILL)
    log = (tmp_path / "serve.log").read_text()
    assert "GET /rest/path/local/big.bin 200" in log  # the access line, once done


def test_graceful_timeout_bounds_the_wait(
    tmp_path: Path, setup: tuple[Path, dict[str, str], str]
) -> None:
    config, env, key = setup
    server = serve(config, env, tmp_path / "serve.log", "--graceful-timeout", "2")
    try:
        with (
            httpx.Client(timeout=30) as c,
            c.stream(
                "GET", server.api + "/path/local/big.bin?action=content", headers={"apikey": key}
            ) as r,
        ):
            next(r.iter_bytes(1024 * 1024))
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            # A client that stalls forever must not keep the process alive.
            server.proc.wait(20)
            assert time.monotonic() - started < 8
    finally:
        server.stop(signal.SIGKILL)
