"""An HTTP third-party pull keeps the digests of what it wrote, computed as the bytes
arrived from the peer (a peer on loopback, tests/webdav/remote.py)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.posix import PosixStorage
from tests.server import Running, local_settings, running
from tests.webdav.helpers import door
from tests.webdav.remote import Remote, serving_remote


@pytest.fixture
def remote() -> Iterator[Remote]:
    with serving_remote() as r:
        yield r


@pytest.fixture
def tpc_gw(tmp_path: Path) -> Iterator[Running]:
    with running(local_settings(tmp_path, tpc_allow_private=True)) as r:
        yield r


def test_a_pulled_file_is_served_its_digest_without_a_reread(
    tpc_gw: Running, remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    remote.files["/data/in.bin"] = data
    auth = {"apikey": tpc_gw.key}
    r = httpx.request(
        "COPY",
        door(tpc_gw) + "/pulled.bin",
        headers={**auth, "Source": remote.url + "/data/in.bin", "Credential": "none"},
        timeout=60,
    )
    assert r.status_code == 202 and r.text.rstrip("\n").endswith("success: Created")
    reads: list[str] = []
    original = PosixStorage.open_read

    def counting(self: PosixStorage, path: str, start: int = 0, end: int | None = None) -> Any:
        reads.append(path)
        return original(self, path, start, end)

    monkeypatch.setattr(PosixStorage, "open_read", counting)
    r = httpx.head(door(tpc_gw) + "/pulled.bin", headers={**auth, "Want-Repr-Digest": "sha-256=1"})
    want = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert r.headers["repr-digest"] == f"sha-256=:{want}:"
    assert reads == []
