from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import Running, local_settings, running

GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
API_KEY_TYPE = "urn:fedgate:params:oauth:token-type:api-key"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path)) as r:
        yield r


def token(gw: Running, scope: str, **extra: object) -> str:
    form = {
        "grant_type": GRANT,
        "subject_token": gw.key,
        "subject_token_type": API_KEY_TYPE,
        "scope": scope,
        **{k: str(v) for k, v in extra.items()},
    }
    r = httpx.post(gw.api + "/token", data=form)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def fedgate(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real ``fedgate`` command (gateway/cli.py dispatching to gateway.client.cli)."""
    clean = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "XDG_RUNTIME_DIR": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
