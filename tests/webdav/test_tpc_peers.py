"""HTTP third-party copy with the field's real peers: fedgate pulls from and pushes to a
real XRootD's HTTP door (scripts/testbeds/xrootd.sh), and gfal2 drives fedgate in its
"3rd pull" and "3rd push" modes, checking ADLER32 end to end.

XRootD as the *active* party (its XrdHttpTPC handler pulling from fedgate) needs TLS on
the daemon and is not run here (README: what is and is not tested)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Running, local_settings, running
from tests.testbeds import run_testbed, running_testbed
from tests.webdav.helpers import door, token

XROOTD_HTTP = "http://127.0.0.1:11095/data"


@pytest.fixture(scope="module")
def se_data() -> Iterator[Path]:
    """XRootD's export folder on disk, to look behind its back."""
    with running_testbed("xrootd"):
        yield Path(run_testbed("xrootd", "path").stdout.strip())


@pytest.fixture(scope="module")
def folder(se_data: Path) -> Iterator[str]:
    name = f"tpc-{uuid.uuid4().hex[:8]}"
    r = httpx.request("MKCOL", f"{XROOTD_HTTP}/{name}")
    assert r.status_code in (200, 201), r.text
    yield name


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Running]:
    # The tests' XRootD listens on loopback: the SSRF guard must let it through here.
    with running(local_settings(tmp_path, tpc_allow_private=True, tpc_marker_interval=1)) as r:
        yield r


def last_line(body: str) -> str:
    return body.rstrip("\n").rsplit("\n", 1)[-1]


def test_fedgate_pulls_from_xrootd(gw: Running, se_data: Path, folder: str) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    assert httpx.put(f"{XROOTD_HTTP}/{folder}/src.bin", content=data).status_code in (200, 201)
    r = httpx.request(
        "COPY",
        door(gw) + "/pulled.bin",
        headers={"apikey": gw.key, "Source": f"{XROOTD_HTTP}/{folder}/src.bin"},
    )
    assert r.status_code == 202
    assert last_line(r.text) == "success: Created"
    assert (gw.data / "pulled.bin").read_bytes() == data


def test_fedgate_pushes_to_xrootd(gw: Running, se_data: Path, folder: str) -> None:
    data = os.urandom(2 * 1024 * 1024 + 7)
    (gw.data / "out.bin").write_bytes(data)
    r = httpx.request(
        "COPY",
        door(gw) + "/out.bin",
        headers={"apikey": gw.key, "Destination": f"{XROOTD_HTTP}/{folder}/pushed.bin"},
    )
    assert r.status_code == 202
    assert last_line(r.text) == "success: Created"
    assert (se_data / folder / "pushed.bin").read_bytes() == data


@pytest.fixture
def gfal(gw: Running) -> Any:
    import gfal2  # Debian's module, exposed to the venv by scripts/gfal2-venv.sh

    ctx = gfal2.creat_context()
    ctx.set_opt_boolean("HTTP PLUGIN", "RETRIEVE_BEARER_TOKEN", False)
    tok = token(gw, "storage.read:/local storage.modify:/local")
    ctx.cred_set(door(gw).replace("http://", "dav://"), ctx.cred_new("BEARER", tok))
    return gfal2, ctx


@pytest.mark.parametrize("mode", ["3rd pull", "3rd push"])
def test_gfal2_drives_a_third_party_copy(
    gfal: Any, gw: Running, se_data: Path, folder: str, mode: str
) -> None:
    gfal2, ctx = gfal
    ctx.set_opt_string("HTTP PLUGIN", "DEFAULT_COPY_MODE", mode)
    # No quiet fallback to streaming the bytes through gfal2: the copy must be third-party.
    ctx.set_opt_boolean("HTTP PLUGIN", "ENABLE_FALLBACK_TPC_COPY", False)
    params = ctx.transfer_parameters()
    # gfal2 compares the source's and the destination's ADLER32 (Want-Digest on both).
    params.set_checksum(gfal2.checksum_mode.both, "ADLER32", "")
    params.overwrite = True
    data = os.urandom(1024 * 1024 + 11)
    fedgate = door(gw).replace("http://", "dav://")
    xrootd = XROOTD_HTTP.replace("http://", "dav://") + f"/{folder}"
    name = mode.replace(" ", "-")
    if mode == "3rd pull":  # XRootD -> fedgate: gfal2 asks fedgate to pull
        (se_data / folder / f"{name}.bin").write_bytes(data)
        ctx.filecopy(params, f"{xrootd}/{name}.bin", f"{fedgate}/{name}.bin")
        assert (gw.data / f"{name}.bin").read_bytes() == data
    else:  # fedgate -> XRootD: gfal2 asks fedgate to push
        (gw.data / f"{name}.bin").write_bytes(data)
        ctx.filecopy(params, f"{fedgate}/{name}.bin", f"{xrootd}/{name}.bin")
        assert (se_data / folder / f"{name}.bin").read_bytes() == data
    # fedgate moved the bytes itself: its audit has the copy with the other end.
    rows = httpx.get(gw.api + "/audit", headers={"apikey": gw.key}).json()
    ends = [row.get("detail", "") for row in rows if row.get("bytes") == len(data)]
    assert any(
        d.startswith(("from http://127.0.0.1:11095/", "to http://127.0.0.1:11095/")) for d in ends
    )
