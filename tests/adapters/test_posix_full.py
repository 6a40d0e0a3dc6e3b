"""A local folder that runs out of space, for real: a 1 MiB tmpfs mounted as the mount's
root. An upload past the space is a 507 (CARMIN 50701) on both faces, leaves nothing at
the target, and never replaces a good file; the TPC marker stream says why. Mounting
needs root (CI runs as root); elsewhere the test says it cannot run."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import local_settings, running
from tests.webdav.helpers import door
from tests.webdav.remote import serving_remote

BIG = os.urandom(2 * 1024 * 1024)  # twice the file system


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    data = tmp_path / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(data)], check=True)


def leftovers(data: Path) -> list[str]:
    return sorted(str(p.relative_to(data)) for p in data.rglob("*") if p.is_file())


def test_a_full_disk_is_a_507_that_leaves_nothing_and_replaces_nothing(full_disk: Path) -> None:
    settings = local_settings(full_disk, tpc_allow_private=True)  # the peer is on loopback
    with running(settings) as gw, gw.client() as client, serving_remote() as remote:
        (gw.data / "good.txt").write_bytes(b"good")
        headers = {"Content-Type": "application/octet-stream"}
        for name in ("new.bin", "good.txt"):
            r = client.put(f"/path/local/{name}", content=BIG, headers=headers)
            assert r.status_code == 507, r.text
            assert r.json()["errorCode"] == 50701
            assert "no space" in r.json()["errorMessage"]
        dav = httpx.Client(base_url=gw.url, headers={"apikey": gw.key}, timeout=30)
        with dav:
            r = dav.put("/webdav/local/dav.bin", content=BIG)
            assert r.status_code == 507, r.text
        # A third-party pull says why on its last line, and leaves nothing either.
        remote.files["/big"] = BIG
        r = httpx.request(
            "COPY",
            door(gw) + "/pulled.bin",
            headers={"apikey": gw.key, "Source": remote.url + "/big"},
            timeout=30,
        )
        last = r.text.strip().splitlines()[-1]
        assert last.startswith("failure:") and "no space left" in last, last
        assert leftovers(gw.data) == ["good.txt"]
        assert (gw.data / "good.txt").read_bytes() == b"good"
        # What fits still goes in: the space given back by the failed uploads is free.
        r = client.put("/path/local/small.bin", content=b"x" * 1000, headers=headers)
        assert r.status_code == 201
